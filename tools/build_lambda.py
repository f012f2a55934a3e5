"""Build the Lambda deployment package for python3.13 on arm64, from any machine: build_lambda.py [PYTHON313].

pip cross-installs the runtime requirements (src/requirements.txt) as manylinux aarch64 wheels for CPython 3.13,
our two packages are copied beside them, and everything is zipped. boto3 is left out: the Lambda runtime has it.
`sam build` does the same from template.yaml (CodeUri src/, requirements.txt there).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "lambda"
ZIP = ROOT / "build" / "function.zip"
TARGET_BYTES = 10 * 1024 * 1024
# The python3.13 Lambda runtime ships boto3 and these; packaging them again only adds weight (aws-xray-sdk pulls
# in botocore, the largest by far).
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "python_dateutil",
                       "six")


def compile_for_lambda(python313: str | None) -> str:
    """Byte-compile with CPython 3.13 so cold starts do not compile (/var/task is read-only, so Lambda would
    compile every module on every cold start). unchecked-hash .pyc files do not depend on file times in the zip."""
    if not python313:
        return "not byte-compiled: no python3.13 here (each cold start then compiles the package)"
    subprocess.run([python313, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(BUILD)], check=True)
    return "byte-compiled for CPython 3.13"


def main() -> int:
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--platform", "manylinux2014_aarch64", "--implementation", "cp", "--python-version", "3.13",
                    "--only-binary=:all:", "--target", str(BUILD), "-r", str(ROOT / "src" / "requirements.txt")],
                   check=True)
    for path in list(BUILD.iterdir()):
        name = path.name.split("-")[0].removesuffix(".py")
        if name in PROVIDED_BY_RUNTIME:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(BUILD / "bin", ignore_errors=True)
    for package in ("handler", "ingest"):
        shutil.copytree(ROOT / "src" / package, BUILD / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for cache in BUILD.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    compiled = compile_for_lambda(sys.argv[1] if len(sys.argv) > 1 else None)
    ZIP.unlink(missing_ok=True)
    with zipfile.ZipFile(ZIP, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(BUILD.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(BUILD))
    size = ZIP.stat().st_size
    unzipped = sum(path.stat().st_size for path in BUILD.rglob("*") if path.is_file())
    verdict = "within" if size <= TARGET_BYTES else "ABOVE"
    print(f"{ZIP.relative_to(ROOT)}: {size / 1024 / 1024:.2f} MiB zipped, {unzipped / 1024 / 1024:.2f} MiB unzipped "
          f"({verdict} the {TARGET_BYTES // 1024 // 1024} MiB target); python3.13, arm64; {compiled}")
    return 0 if size <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
