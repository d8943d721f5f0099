#!/usr/bin/env python3
"""Build the sample "netguard" co-installed product (a traffic classifier).

    python samples/linux-netguard/build_product.py --out DIR \\
        --kernel 6.1.0-56-amd64 [--kernel 6.1.0-55-amd64] [--version 1.4.0] [-q]

For every kernel release the module in module/ is built out of tree against
/usr/src/linux-headers-<release>. DIR then receives:

    netguard-<version>-linux-x86_64.tar.gz    the package (same contract as a
        netguard/{install.sh,uninstall.sh,healthcheck.sh,VERSION}    Linux sensor package)
        netguard/modules/<release>/testbed_netguard.ko
    product.yaml                              what the testbed's products directory holds

Built and packaged like the sample DLP agent (samples/linux-dlp), with the sample
sensor's helpers (samples/linux-sensor/kmod_package.py): the tarball is reproducible.

!!! Together with the sample sensor 1.1.0 the module cuts the machine off the
network.  Never load it on the build host -- only inside disposable guest VMs.

Stdlib only; ``main(argv)`` is importable. The build is shared: ../linux-sensor/kmod_product.py.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def _load_kmod_product() -> ModuleType:
    """The build shared by the kernel-module sample products (../linux-sensor/kmod_product.py)."""
    name = "_testbed_kmod_product"
    if name in sys.modules:
        return sys.modules[name]
    path = HERE.parent / "linux-sensor" / "kmod_product.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_shared = _load_kmod_product()
PRODUCT = _shared.KmodProduct(
    directory=HERE,
    name="netguard",
    module_name="testbed_netguard",
    default_version="1.4.0",
    version_make_var="NG_VERSION",
    description="the sample netguard traffic classifier product",
)
_kmod = _shared._kmod
BuildError = _shared.BuildError
DEFAULT_HEADERS_ROOT = _shared.DEFAULT_HEADERS_ROOT
Product = _shared.Product
build_module = PRODUCT.build_module
build_product = PRODUCT.build_product
render_product_yaml = PRODUCT.render_product_yaml
main = PRODUCT.main

if __name__ == "__main__":
    sys.exit(main())
