"""securesystemslib's signer types, imported from where they are defined.

``securesystemslib.signer`` re-exports them without ``__all__``, which mypy's strict mode does not
count as an export; importing them here, once, keeps every other module on the public names.
"""

from securesystemslib.signer._crypto_signer import CryptoSigner
from securesystemslib.signer._key import SSlibKey
from securesystemslib.signer._signature import Signature
from securesystemslib.signer._signer import Signer

__all__ = ["CryptoSigner", "SSlibKey", "Signature", "Signer"]
