"""Run one page's runnable code blocks in order, as a reader would (see tests/test_docs_run.py).

``python tests/doc_blocks_runner.py BLOCKS.json``: BLOCKS.json is a list of
``{"lang": "python" | "bash", "code": ..., "where": "PAGE:LINE"}``. Python
blocks share one namespace (a reader pasting them, in order, into one
interpreter); bash blocks run with ``bash -euo pipefail`` in the current
folder. The first block that fails stops the page, naming where it is.

The root conftest is imported first: it blocks every non-loopback connection
and sets the model hubs offline, as in the tests. A ``TokenleanWarning`` is an
error (a documented example must not warn).
"""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(path: str) -> int:
    sys.path.insert(0, str(ROOT))
    import conftest  # noqa: F401  (the offline guards, for this process)
    from tokenlean.core import TokenleanWarning

    warnings.simplefilter("error", TokenleanWarning)
    blocks = json.loads(Path(path).read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks:
        print(f"----- {block['where']} ({block['lang']})", flush=True)
        try:
            if block["lang"] == "python":
                exec(compile(block["code"], block["where"], "exec"), namespace)
            else:
                subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]], check=True)
        except BaseException:
            sys.stdout.flush()
            traceback.print_exc()
            print(f"FAILED: the {block['lang']} block at {block['where']}", file=sys.stderr)
            return 1
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
