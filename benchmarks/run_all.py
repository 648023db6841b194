"""Run every benchmark in this folder (each prints its own figures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    quick = ["--quick"] if "--quick" in sys.argv else []
    for script in sorted(HERE.glob("*.py")):
        if script.name == "run_all.py":
            continue
        print(f"== {script.name}", flush=True)
        subprocess.run([sys.executable, str(script), *([] if script.name != "sim.py" else quick)], check=False)
