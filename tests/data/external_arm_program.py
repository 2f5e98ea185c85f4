"""A stand-in reconstruction program for the external-command arm's tests.

usage: external_arm_program.py INPUT.npz OUTPUT.npz [ok|fail|sleep|garbage|nan|child]
       external_arm_program.py INPUT_DIR PRODUCT.h5    (ptychodus: the input product, unchanged)
ok: writes the input's objectGuess (the flat start) times a phase ramp as 'object'; fail: exits 3
with a message; sleep: sleeps (to be killed by the timeout); garbage: writes a file that is not
NPZ; nan: writes an object with NaN; child: starts a sleeping child, then sleeps.
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

inp, out, mode = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "ok")
if Path(inp).is_dir():
    from ptychodus.api.io import load_product, save_product

    save_product(Path(out), load_product(Path(inp) / "product.h5"))
    sys.exit(0)
if mode == "fail":
    print("something went wrong in the program")
    sys.exit(3)
if mode in ("sleep", "child"):
    if mode == "child":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    time.sleep(300)
if mode == "garbage":
    Path(out).write_text("not an npz")
    sys.exit(0)
with np.load(inp) as z:
    obj = z["objectGuess"].astype(np.complex64)
    n = len(z["xcoords"])
H, W = obj.shape
obj = obj * np.exp(0.1j * np.arange(W) / W)[None, :]
if mode == "nan":
    obj[0, 0] = np.nan
np.savez(out, object=obj)
print(f"reconstructed {n} patterns on a {H} x {W} grid")
