"""The platform's CLI: LightningCLI with run directories, the callbacks every run gets, W&B, device checks.

    litlab fit --config configs/gpt_small.yaml        # from any directory (pip install -e . installs it)
    python -m platform fit --config ...               # the same, from the repo root
"""
