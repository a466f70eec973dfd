"""Static inspection of a Lathe (or Cog) predict entry point.

Usage: python3 inspect_predictor.py FILE SYMBOL [predict|train]
       python3 inspect_predictor.py --imports FILE...
Prints one JSON object describing the entry point, or (--imports) the modules each file imports
at module level: [{"file", "module", "line", "stdlib"}]. Never imports or runs the model's code, so the
model's dependencies need not be installed.
"""
import ast
import json
import sys

SIMPLE = {
    "str": "string", "int": "integer", "float": "number", "bool": "boolean",
    "Path": "file", "File": "file", "PurePath": "file", "Secret": "secret",
    "dict": "object", "Dict": "object", "Any": "object", "Mapping": "object", "BaseModel": "object",
    "list": "array", "List": "array", "Sequence": "array",
}
ITERATORS = {"Iterator", "AsyncIterator", "Generator", "AsyncGenerator", "Iterable", "AsyncIterable"}
CONCATENATE = {"ConcatenateIterator", "AsyncConcatenateIterator"}


def name_of(node):
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def literal(node):
    try:
        return True, ast.literal_eval(node)
    except Exception:
        return False, None


def annotation(node):
    """Maps a Python annotation to a Lathe type description."""
    if node is None:
        return None
    text = ast.unparse(node)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return annotation(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return {"type": None, "text": text}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null", "text": text}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [annotation(node.left), annotation(node.right)]
        return union(parts, text)
    if isinstance(node, ast.Subscript):
        outer = name_of(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer == "Optional":
            inner = annotation(args[0]) or {"type": None}
            return dict(inner, nullable=True, text=text)
        if outer == "Union":
            return union([annotation(a) for a in args], text)
        if outer == "Annotated":
            return dict(annotation(args[0]) or {"type": None}, text=text)
        if outer in ("list", "List", "Sequence"):
            inner = annotation(args[0]) or {}
            return {"type": "array", "items": inner.get("type"), "text": text}
        if outer in ITERATORS or outer in CONCATENATE:
            inner = annotation(args[0]) or {}
            return {"type": "iterator", "items": inner.get("type"), "concatenate": outer in CONCATENATE, "text": text}
        if outer in ("dict", "Dict", "Mapping"):
            return {"type": "object", "text": text}
        if outer == "Literal":
            values = [literal(a)[1] for a in args]
            kinds = {type(v).__name__ for v in values}
            kind = {"str": "string", "int": "integer", "float": "number"}.get(kinds.pop() if len(kinds) == 1 else "", None)
            return {"type": kind, "choices": values, "text": text}
        return {"type": None, "text": text}
    base = name_of(node)
    if base in SIMPLE:
        return {"type": SIMPLE[base], "text": text}
    return {"type": None, "text": text}


def union(parts, text):
    parts = [p or {"type": None} for p in parts]
    real = [p for p in parts if p.get("type") != "null"]
    nullable = len(real) < len(parts)
    if len(real) == 1:
        return dict(real[0], nullable=nullable or real[0].get("nullable", False), text=text)
    return {"type": None, "text": text, "nullable": nullable}


def default_of(node):
    if node is None:
        return {"kind": "none"}
    if isinstance(node, ast.Call) and name_of(node.func) == "Input":
        kwargs = {}
        unreadable = []
        for keyword in node.keywords:
            ok, value = literal(keyword.value)
            if ok:
                kwargs[keyword.arg] = value
            else:
                unreadable.append(keyword.arg)
        if node.args:
            ok, value = literal(node.args[0])
            if ok:
                kwargs.setdefault("default", value)
        return {"kind": "input", "input": kwargs, "has_default": "default" in kwargs, "unreadable": unreadable}
    ok, value = literal(node)
    if ok:
        return {"kind": "literal", "value": value}
    return {"kind": "other", "text": ast.unparse(node)}


def annotated_input(node):
    """The Input(...) (or pydantic Field(...)) among an Annotated[...] annotation's metadata."""
    if isinstance(node, ast.Subscript) and name_of(node.value) == "Annotated" and isinstance(node.slice, ast.Tuple):
        for meta in node.slice.elts[1:]:
            if isinstance(meta, ast.Call) and name_of(meta.func) in ("Input", "Field"):
                return default_of(meta)
    return None


def with_annotated(info, meta):
    """A parameter's default merged with the Input(...) of its Annotated metadata."""
    if meta is None or info["kind"] == "other":
        return info
    merged = dict(meta["input"])
    if info["kind"] == "literal":
        merged["default"] = info["value"]
    elif info["kind"] == "input":
        merged.update(info["input"])
    return {"kind": "input", "input": merged, "has_default": "default" in merged,
            "unreadable": meta["unreadable"] + info.get("unreadable", [])}


def parameters(fn, skip_self):
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    if skip_self and pairs and pairs[0][0].arg in ("self", "cls"):
        pairs = pairs[1:]
    result = []
    for arg, default in pairs:
        result.append({
            "name": arg.arg, "line": arg.lineno, "column": arg.col_offset + 1,
            "annotation": annotation(arg.annotation),
            "default": with_annotated(default_of(default), annotated_input(arg.annotation)),
        })
    return result, args.kwarg is not None


def function(fn, skip_self):
    params, kwargs = parameters(fn, skip_self)
    return {
        "name": fn.name, "line": fn.lineno, "column": fn.col_offset + 1, "params": params,
        "var_kwargs": kwargs, "returns": annotation(fn.returns), "async": isinstance(fn, ast.AsyncFunctionDef),
    }


def main():
    path, symbol = sys.argv[1], sys.argv[2]
    # A class's method: predict() (or Cog's newer run()) for predict:, train() for train:.
    role = sys.argv[3] if len(sys.argv) > 3 else "predict"
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except OSError as error:
        return {"error": "unreadable", "message": str(error)}
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        return {"error": "syntax", "message": error.msg, "line": error.lineno or 1, "column": error.offset or 1}
    top = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            top[node.name] = node
    node = top.get(symbol)
    if node is None:
        return {"error": "missing_symbol", "available": sorted(top)}
    if isinstance(node, ast.ClassDef):
        methods = {}
        # Methods of base classes defined in the same file count too.
        chain = [node]
        while chain:
            current = chain.pop(0)
            for item in current.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    methods.setdefault(item.name, item)
            for base in current.bases:
                if name_of(base) in top and isinstance(top[name_of(base)], ast.ClassDef):
                    chain.append(top[name_of(base)])
        entry = methods.get("train") if role == "train" else (methods.get("predict") or methods.get("run"))
        setup = methods.get("setup")
        return {
            "kind": "class", "name": node.name, "line": node.lineno, "column": node.col_offset + 1,
            "bases": [ast.unparse(b) for b in node.bases],
            "predict": function(entry, True) if entry else None,
            "setup": function(setup, True) if setup else None,
        }
    return {"kind": "function", "name": node.name, "line": node.lineno, "column": node.col_offset + 1,
            "predict": function(node, False), "setup": None}


def module_imports(paths):
    """Absolute imports run when each file is imported (module level, also inside if/with; not
    inside try, where a missing module is handled), by top-level package name; files that do
    not parse are skipped (the entry point's own inspection reports those)."""
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    found = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), filename=path)
        except (OSError, SyntaxError, ValueError):
            continue
        pending = list(tree.body)
        while pending:
            node = pending.pop(0)
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, (ast.If, ast.With)):
                pending.extend(node.body)
                pending.extend(getattr(node, "orelse", []) or [])
            for name in names:
                top = name.split(".")[0]
                found.append({"file": path, "module": top, "line": node.lineno, "stdlib": top in stdlib or top == "__future__"})
    return found


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--imports":
        print(json.dumps(module_imports(sys.argv[2:])))
    else:
        print(json.dumps(main()))
