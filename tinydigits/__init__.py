"""tinydigits: small CNNs for handwritten and spoken digits, verified on a Raspberry Pi.

Importing this package must stay cheap and must never import TensorFlow or Keras:
it is what runs on the device. Training-side modules (blocks, convert, datasets'
downloads) import Keras themselves, lazily.
"""

__version__ = "0.1.0"
