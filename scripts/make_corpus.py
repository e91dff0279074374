"""Builds www/corpus.json, the demo's corpus: the first sentence of the docstrings of public
functions and classes in a set of Python standard-library modules, sorted by length.
Source: the Python 3.11 standard library, (c) Python Software Foundation, PSF License
Version 2 (https://docs.python.org/3/license.html). Regenerate: python3 scripts/make_corpus.py
"""
import importlib, inspect, json, re

# A few hundred passages: enough to search, few enough to index in minutes on a software
# WebGPU adapter (SwiftShader), where the demo's test runs.
MODULES = """base64 bisect calendar copy csv datetime difflib fnmatch functools glob gzip hashlib
heapq itertools json math os.path pathlib random secrets shlex shutil statistics string
tempfile textwrap time uuid zlib""".split()

docs = []
for m in MODULES:
    mod = importlib.import_module(m)
    for name in sorted(dir(mod)):
        if name.startswith("_"):
            continue
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
            continue
        if getattr(obj, "__module__", m) not in (m, m.replace(".", "_"), "posix", "_" + m, None) and not m.startswith("os"):
            continue
        doc = inspect.getdoc(obj) or ""
        paras = re.split(r"\n\s*\n", doc.strip())
        # Builtins start with a signature line ("sleep(seconds)"): take the text after it.
        if len(paras) > 1 and re.match(r"^[\w.]+\(.*\)( -> .*)?$", paras[0].strip()):
            paras = paras[1:]
        para = paras[0].replace("\n", " ")
        para = re.sub(r"\s+", " ", para)
        # The first sentence: short passages keep indexing quick on software WebGPU.
        para = re.split(r"(?<=[.!?])\s+(?=[A-Z])", para)[0][:240]
        if len(para) < 20:
            continue
        docs.append({"title": f"{m}.{name}", "text": para[:600]})

seen, corpus = set(), []
# Sorted by length, so each batch of 32 pads little.
for d in sorted(docs, key=lambda d: (len(d["title"]) + len(d["text"]), d["title"])):
    if d["text"] not in seen:
        seen.add(d["text"])
        corpus.append(d)
json.dump({"source": "Python 3.11 standard library docstrings (first sentence), (c) Python Software Foundation, PSF License Version 2",
           "documents": corpus}, open("www/corpus.json", "w"), indent=0, ensure_ascii=False)
print(f"{len(corpus)} documents")
