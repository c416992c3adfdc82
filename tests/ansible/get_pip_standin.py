"""Stand-in for pip's ``get-pip.py`` bootstrap script, for ``ansible-test`` on a machine that cannot reach the host
ansible-test downloads that script from (only PyPI is reachable here).

ansible-test creates each sanity test's virtual environment without pip and runs this script in it with
``pip install`` arguments (the pinned pip version among them) and get-pip's own ``--no-setuptools``/``--no-wheel``.
pip comes from the standard library's ``ensurepip`` first, then installs what was asked from PyPI, as the real
script would.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_OPTIONS = ("--no-setuptools", "--no-wheel")

if __name__ == "__main__":
    # in a child: ensurepip points PIP_CONFIG_FILE at /dev/null in its own environment, which would hide this
    # machine's pip configuration (its index and CA bundle) from the install below
    subprocess.run([sys.executable, "-m", "ensurepip"], check=True, stdout=subprocess.DEVNULL)
    args = [a for a in sys.argv[1:] if a not in GET_PIP_OPTIONS]
    subprocess.run([sys.executable, "-m", "pip", "install", *args], check=True)
    if "--no-setuptools" in sys.argv:  # ensurepip brings setuptools along; get-pip would not have
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True)
