"""Offline stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test --venv downloads get-pip.py from a host CI cannot reach; it accepts a
cached copy at ~/.ansible/test/cache/get_pip_<version>.py. This stand-in seeds pip
from the interpreter's bundled wheel (ensurepip) and then lets that pip install the
exact packages ansible-test asked for (e.g. pip==25.2) from the package index.
"""

import ensurepip
import subprocess
import sys

ensurepip.bootstrap()
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
