"""Parse errors in one line: where the bad value was given (a config file, or the command line), its key,
the value, and what was expected.

jsonargparse reports a bad value deep inside a config as a tree: each subclass (the model, its network,
its optimizer) adds a level, each Union type its alternatives, and the whole usage block comes first.
``one_line`` finds the deepest failure in that tree, names its full key, and looks the value up where
the user wrote it. ``check_config_files`` reads the ``--config`` files first, so that a missing file or
malformed YAML names the file (and the line and column), which jsonargparse's message does not.
"""

import os
import re

import yaml

CONTEXT = re.compile(r"Parser key \"([^\"]+)\":|Problem with given class_path '([^']+)':|expects a function or a callable class:")
NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes:|Errors:|Given value|Expected a <class 'NoneType'>"
    r"|Expected a path but|Expected a dot import path string|Type .* expects a function or a callable class:?$)"
)


def check_config_files(args: list[str]) -> None:
    """Each ``--config`` file exists and is a YAML mapping; else a one-line ValueError naming it."""
    for path in config_files(args):
        if not os.path.isfile(path):
            if path.endswith((".yaml", ".yml", ".json")) or os.sep in path:
                raise FileNotFoundError(f"--config {path}: no such file; expected a YAML config, such as configs/gpt_small.yaml")
            continue  # jsonargparse also takes a config written inline, as YAML text
        try:
            with open(path, encoding="utf-8") as f:
                content = yaml.safe_load(f)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ValueError(f"--config {path}:{where}: malformed YAML, {err.problem or err.context}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ValueError(f"--config {path}: not a readable YAML file ({err})") from None
        if content is not None and not isinstance(content, dict):
            raise ValueError(f"--config {path}: a YAML {type(content).__name__}, expected a mapping of keys (model, data, trainer...) to values")


def config_files(args: list[str]) -> list[str]:
    files = []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def one_line(message: str, args: list[str]) -> str:
    """jsonargparse's (multi-line) parse error as one line; ``args``, the command line, say where the value came from."""
    message = message.strip()
    if "\n" not in message and not message.startswith("Parser key") and "does not accept option" not in message:
        return message  # already one line (an unrecognized option, a type error of a plain argument...)
    key, leaves, cls = deepest_failure(message)
    unknown = re.search(r"Option '([^']+)' is not accepted|does not accept option '([^']+)'", message)
    if unknown:
        option = unknown.group(1) or unknown.group(2)
        key = f"{key}.init_args.{option}" if key else option
        return f"{given_at(key, args)}: no such option of {cls or 'this command'}"
    imports = [leaf for leaf in leaves if re.search(r"has no attribute|No module named", leaf)]
    if imports:  # a class_path that does not import
        return f"{given_at(key, args)}: cannot import it ({re.sub(r'. Got value: .*$', '', imports[-1])}); expected a class's import path"
    return f"{given_at(key, args)}: {expected(leaves)}"


def deepest_failure(message: str) -> tuple[str, list[str], str]:
    """The full key of the most deeply nested failure in jsonargparse's tree, its messages, and the class it is in."""
    stack: list[tuple[int, str, str]] = []  # (indent, "key" | "class", value)
    best_key, best_depth, leaves, best_class = "", -1, [], ""
    for raw in message.splitlines():
        text = raw.strip().removeprefix("- ").strip()
        if not text:
            continue
        indent = len(raw) - len(raw.lstrip(" "))  # a "- " item's own lines are indented past its dash
        while stack and stack[-1][0] >= indent:
            stack.pop()
        contexts = list(CONTEXT.finditer(text))
        for match in contexts:
            if match.group(1):
                stack.append((indent, "key", match.group(1)))
            else:
                stack.append((indent, "class", match.group(2) or ""))
        rest = CONTEXT.sub("", re.sub(r"Type .*? expects a function or a callable class:", "", text)).strip(" :")
        if not rest or NOISE.match(rest) or (contexts and NOISE.match(text)):
            continue
        keys = [value for _, kind, value in stack if kind == "key"]
        key = ".init_args.".join(keys)
        depth = len(keys)
        classes = [value for _, kind, value in stack if kind == "class" and value]
        if depth > best_depth:
            best_key, best_depth, leaves, best_class = key, depth, [rest], classes[-1] if classes else ""
        elif depth == best_depth and rest not in leaves:
            leaves.append(rest)
    return best_key, leaves, best_class


def expected(leaves: list[str]) -> str:
    """'Expected a <class 'int'>', 'Expected a typing.Literal[...]'... as: expected an int, expected one of a, b."""
    choices, kinds, other = [], [], []
    for leaf in leaves:
        leaf = re.sub(r"\.? Got value: .*$", "", leaf)
        literal = re.fullmatch(r"Expected a typing\.Literal\[(.*)\]", leaf)
        kind = re.fullmatch(r"Expected an? <class '([\w.]+)'>", leaf)
        if literal:
            choices += [c.strip().strip("'\"") for c in literal.group(1).split(",")]
        elif kind:
            kinds.append(kind.group(1).rsplit(".", 1)[-1])
        else:
            other.append(leaf[0].lower() + leaf[1:] if leaf[:1].isupper() and not leaf[1:2].isupper() else leaf)
    parts = []
    if choices:
        parts.append("one of " + ", ".join(dict.fromkeys(choices)))
    parts += [f"a{'n' if k[0] in 'aeiou' else ''} {k}" for k in dict.fromkeys(kinds)]
    if parts:
        return "expected " + " or ".join(parts)
    return "; ".join(other) or "not a valid value"


def given_at(key: str, args: list[str]) -> str:
    """``key`` and its value where it was set last: ``--key value`` on the command line, or ``file: key=value``."""
    for flag in (f"--{key}", f"--{key}.class_path"):
        for i in range(len(args) - 1, -1, -1):
            if args[i] == flag and i + 1 < len(args):
                return f"{flag} {args[i + 1]}"
            if args[i].startswith(flag + "="):
                return args[i]
    for path in reversed(config_files(args)):
        try:
            with open(path, encoding="utf-8") as f:
                found, value = lookup(yaml.safe_load(f), key.split("."))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if found:
            return f"{path}: {key}" + (f"={value!r}" if not isinstance(value, (dict, list)) else "")
    return key


def lookup(tree, parts: list[str]) -> tuple[bool, object]:
    """``tree[a][b]...``, where a config may also leave out the ``init_args`` levels."""
    if not parts:
        return True, tree
    if not isinstance(tree, dict):
        return False, None
    if parts[0] in tree:
        found = lookup(tree[parts[0]], parts[1:])
        if found[0]:
            return found
    if parts[0] == "init_args":
        return lookup(tree, parts[1:])
    return False, None
