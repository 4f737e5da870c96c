"""A small Dockerfile reader and .dockerignore matcher for tests/container.

Enough of Docker's rules for the project's own files: line continuations,
comment lines, JSON and shell forms, instruction flags, stages, and
.dockerignore patterns with '*', '?', '**', '!' exceptions and parent-folder
matches (as moby/patternmatcher does).
"""
import json
import os
import re
import shlex


class Instruction:
    def __init__(self, line, keyword, rest):
        self.line = line          # 1-based line of the instruction's start
        self.keyword = keyword    # upper case
        self.rest = rest          # arguments, continuations joined

    def json_args(self):
        """The JSON array form, or None for the shell form."""
        text = self.rest.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return None
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
        return None

    def flags_and_args(self):
        """(flags dict, positional args) of COPY/ADD-like instructions."""
        text = self.rest.strip()
        flags = {}
        while text.startswith("--"):
            word, _, text = text.partition(" ")
            name, _, value = word[2:].partition("=")
            flags[name] = value
            text = text.strip()
        if text.startswith("["):
            return flags, json.loads(text)
        return flags, shlex.split(text, posix=True)

    def __repr__(self):
        return f"{self.keyword} {self.rest} (line {self.line})"


def parse(path):
    """Instructions of a Dockerfile, in order."""
    with open(path) as f:
        lines = f.read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        start = i
        text = line.rstrip()
        while text.endswith("\\"):
            text = text[:-1]
            # Comment lines inside a continuation are dropped, like Docker.
            while i < len(lines) and lines[i].strip().startswith("#"):
                i += 1
            if i >= len(lines):
                break
            text += " " + lines[i].strip()
            i += 1
        keyword, _, rest = text.strip().partition(" ")
        out.append(Instruction(start, keyword.upper(), rest.strip()))
    return out


class Stage:
    def __init__(self, index, base, name):
        self.index = index
        self.base = base
        self.name = name
        self.instructions = []


def stages(instructions):
    """(global ARGs {name: default}, [Stage]) of a parsed Dockerfile."""
    global_args = {}
    result = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.rest.split()
            flags = [w for w in words if w.startswith("--")]
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stage = Stage(len(result), words[0], name)
            stage.flags = flags
            result.append(stage)
        elif not result:
            if ins.keyword == "ARG":
                name, _, default = ins.rest.partition("=")
                global_args[name.strip()] = default.strip().strip('"') if _ else None
        else:
            result[-1].instructions.append(ins)
    return global_args, result


def expand(text, args):
    """${NAME} and $NAME from build ARG defaults."""
    def sub(m):
        name = m.group(1) or m.group(2)
        value = args.get(name)
        return value if value is not None else m.group(0)
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, text)


# ---- .dockerignore ----

def _pattern_regex(pattern):
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i:i + 2] == "**":
                # "**/" matches any number of folders, "**" anything.
                if pattern[i:i + 3] == "**/":
                    out += "(?:.*/)?"
                    i += 3
                    continue
                out += ".*"
                i += 2
                continue
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            if j < 0:
                out += re.escape(c)
            else:
                out += pattern[i:j + 1]
                i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


def read_dockerignore(path):
    """[(regex, exception?)] of a .dockerignore (missing file: none)."""
    if not os.path.exists(path):
        return []
    rules = []
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            line = os.path.normpath(line).lstrip("/")
            if line in ("", "."):
                continue
            rules.append((_pattern_regex(line), exception))
    return rules


def ignored(rules, relpath):
    """Whether .dockerignore RULES leave RELPATH (context-relative) out."""
    relpath = os.path.normpath(relpath).lstrip("/")
    parts = relpath.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for regex, exception in rules:
        # A pattern matching a parent folder matches everything under it.
        if any(regex.match(p) for p in prefixes):
            result = not exception
    return result
