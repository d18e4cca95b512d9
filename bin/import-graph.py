#!/usr/bin/env python3
"""Prints the module import graph of a crate's src/ directory and fails if it has a cycle.

Usage: bin/import-graph.py crates/session-client/src [more src dirs...]

A module is a file under src/ (`a/mod.rs` is `a`, `a/b.rs` is `a::b`); an edge A -> B means
A's code (comments left out) names `crate::B` (or `super::B`, resolved). Only the top two levels count, so
`transport::pipeline -> transport::calls` is an edge inside `transport`. Test modules
(`#[cfg(test)] mod tests`) are left out: tests may reach anywhere.
"""
import pathlib
import re
import sys


def modules(src):
    mods = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts in (["lib"], ["main"]) or not parts:
            continue
        text = path.read_text()
        # Leave out the unit tests at the end of a file.
        cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
        text = text[: cut.start()] if cut else text
        # Comments and doc links name modules without importing them.
        text = re.sub(r"//[^\n]*", "", text)
        mods["::".join(parts)] = text
    return mods


def targets(name, text, known):
    found = set()
    here = name.split("::")
    # `use crate::{a, b::c}` and `crate::a::...` paths.
    for group in re.findall(r"crate::\{([^;]*?)\};", text, re.S):
        for item in re.split(r"[,\s]+", group):
            found.add(item.split("::")[0].strip("{} "))
    for item in re.findall(r"crate::([a-z_]+)(?:::([a-z_]+))?", text):
        found.add(item[0])
        if item[1]:
            found.add(f"{item[0]}::{item[1]}")
    # `super::x`, `super::{x, y}`: siblings in the parent module.
    parent = here[:-1]
    for group in re.findall(r"super::\{([^;]*?)\}", text, re.S):
        for item in re.split(r"[,\s]+", group):
            item = item.split("::")[0].strip("{} ")
            if item:
                found.add("::".join(parent + [item]))
    for item in re.findall(r"super::([a-z_]+)", text):
        found.add("::".join(parent + [item]))
    edges = set()
    for t in found:
        if t in known and t != name and not name.startswith(t + "::") and not t.startswith(name + "::"):
            edges.add(t)
    return edges


def cycle(graph):
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def main():
    failed = False
    for arg in sys.argv[1:] or ["crates/session-client/src"]:
        src = pathlib.Path(arg)
        mods = modules(src)
        graph = {name: targets(name, text, mods) for name, text in mods.items()}
        print(f"{src}:")
        for name in sorted(graph):
            print(f"  {name} -> {', '.join(sorted(graph[name])) or '(nothing)'}")
        found = cycle(graph)
        if found:
            print(f"  CYCLE: {' -> '.join(found)}")
            failed = True
        else:
            print("  one-way: no cycle")
    sys.exit(1 if failed else 0)


main()
