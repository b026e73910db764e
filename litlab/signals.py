"""Stopping on SIGTERM and SIGINT: the run saves the step it is at, says where, and exits 128 + the signal.

Schedulers (Kubernetes, SLURM at its time limit, torchrun elastic, a reclaimed spot instance) stop jobs with
SIGTERM, and Ctrl-C sends SIGINT: both mean "stop soon, lose nothing". While a fit trains, a signal is only
noted: ``LastCheckpoint`` saves as soon as the current step (or validation batch) is done, on every rank at
the same step, and raises ``Stopped``, which the CLI turns into one line and exit status 143 (SIGTERM) or 130
(SIGINT), the shell's convention. Outside training there is nothing to save, and a signal stops the process
at once; so does a second signal. SIGUSR1 (SLURM's requeue signal) stays Lightning's.
"""

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A run stopped by a signal; ``checkpoint`` is what it saved, at ``step`` (None when nothing was).
    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signum: int, checkpoint: str | None = None, step: int | None = None, again: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.checkpoint, self.step = signum, checkpoint, step
        self.again = again  # a second signal, which did not wait for the save

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """This process's handler of SIGTERM and SIGINT: it raises ``Stopped`` at once, or, while
    ``deferred`` (a fit between its first and last training step), notes the signal for ``LastCheckpoint``
    to act on at the end of the step."""

    def __init__(self):
        self.signum: int | None = None
        self.deferred = False
        self.pid = os.getpid()

    def install(self) -> None:
        """Take SIGTERM and SIGINT; also over Lightning's SIGTERM handler, which stops a fit without saving."""
        self.signum, self.pid = None, os.getpid()
        for signum in SIGNALS:
            signal.signal(signum, self._handle)

    @contextmanager
    def handling(self) -> Iterator[None]:
        """SIGTERM and SIGINT handled so within, and handed back as they were after (to pytest, a notebook...)."""
        previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
        self.install()
        try:
            yield
        finally:
            self.deferred = False
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self.pid:  # a DataLoader worker (Ctrl-C reaches the whole process group): the main process decides
            return
        if self.deferred and self.signum is None:
            self.signum = signum
            name = signal.Signals(signum).name
            print(f"{name}: stopping once this step is saved ({name} again stops at once, without saving)", file=sys.stderr, flush=True)
            return
        raise Stopped(signum, again=self.signum is not None)


STOP = StopRequest()  # signals are per process: one request per process
