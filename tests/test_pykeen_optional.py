"""kmas_kernels.pykeen is optional: without PyKEEN, importing it says how to install it."""

import subprocess
import sys


def test_clear_import_error_without_pykeen():
    code = (
        "import sys; sys.modules['pykeen'] = None\n"
        "try:\n    import kmas_kernels.pykeen\n"
        "except ImportError as e:\n    print('MESSAGE', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "MESSAGE kmas_kernels.pykeen needs PyKEEN" in out.stdout, out.stderr
    assert "pip install" in out.stdout
