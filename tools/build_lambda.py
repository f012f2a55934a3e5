"""Build the Lambda deployment package for python3.13 on arm64, from any machine:
build_lambda.py [PYTHON313] [--into DIR].

pip cross-installs the runtime requirements (src/requirements.txt) as manylinux aarch64 wheels for CPython 3.13,
our two packages are copied beside them, and everything is zipped. boto3 is left out: the Lambda runtime has it.
`sam build` runs this too (BuildMethod: makefile; the Makefile's build-<Function> targets), with ``--into``
its ARTIFACTS_DIR, so the artifact it deploys is this lean package and not a copy of src/ with every
dependency's dependencies (botocore alone is 30 MB).
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


# The command line and the local and test tools: never imported by a handler, so not shipped to Lambda.
LOCAL_ONLY = ("cli.py", "cli_*.py", "compile_cli.py", "file_loader.py", "inputs.py", "invoke.py",
              "local_publisher.py", "local_pipeline.py", "local_server.py")

def compile_for_lambda(python313: str | None, build: Path) -> str:
    """Byte-compile with CPython 3.13 so cold starts do not compile (/var/task is read-only, so Lambda would
    compile every module on every cold start). unchecked-hash .pyc files do not depend on file times in the zip."""
    if not python313:
        return "not byte-compiled: no python3.13 here (each cold start then compiles the package)"
    subprocess.run([python313, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(build)], check=True)
    return "byte-compiled for CPython 3.13"


def main() -> int:
    args = sys.argv[1:]
    into = None
    if "--into" in args:
        at = args.index("--into")
        into = Path(args[at + 1])
        del args[at:at + 2]
    # sam build runs one build per function, in parallel: each gets its own staging directory.
    build = BUILD if into is None else ROOT / "build" / f"lambda-{into.name}"
    zip_path = ZIP if into is None else build.with_suffix(".zip")
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--platform", "manylinux2014_aarch64", "--implementation", "cp", "--python-version", "3.13",
                    "--only-binary=:all:", "--target", str(build), "-r", str(ROOT / "src" / "requirements.txt")],
                   check=True)
    for path in list(build.iterdir()):
        name = path.name.split("-")[0].removesuffix(".py")
        if name in PROVIDED_BY_RUNTIME:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(build / "bin", ignore_errors=True)
    for package in ("handler", "ingest"):
        shutil.copytree(ROOT / "src" / package, build / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *LOCAL_ONLY))
    for cache in build.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    compiled = compile_for_lambda(args[0] if args else None, build)
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(build.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(build))
    size = zip_path.stat().st_size
    unzipped = sum(path.stat().st_size for path in build.rglob("*") if path.is_file())
    if into is not None:
        # sam build zips ARTIFACTS_DIR itself; it gets the very tree that was zipped here.
        shutil.copytree(build, into, dirs_exist_ok=True)
    verdict = "within" if size <= TARGET_BYTES else "ABOVE"
    print(f"{zip_path.relative_to(ROOT)}: {size / 1024 / 1024:.2f} MiB zipped, "
          f"{unzipped / 1024 / 1024:.2f} MiB unzipped "
          f"({verdict} the {TARGET_BYTES // 1024 // 1024} MiB target); python3.13, arm64; {compiled}")
    return 0 if size <= TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
