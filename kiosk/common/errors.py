"""One error tree for Stempel; each class also inherits the fitting builtin.

Vendor errors (sqlite3, zbar, luma, gpiozero) are translated into these at the
boundary, with a message that tells the user what to do.
"""


class StempelError(Exception):
    """Base of every error Stempel raises on purpose."""


class ConfigError(StempelError, ValueError):
    """A configuration file or message is invalid; the message names the field and the fix."""


class HardwareError(StempelError, RuntimeError):
    """A hardware backend could not be opened or used."""


class BackendUnavailable(HardwareError, ImportError):
    """The configured backend needs a library that is not installed."""


class CameraError(HardwareError):
    """The camera could not deliver a frame."""


class CameraExhausted(CameraError, EOFError):
    """A replay camera has no frames left.

    An EOFError, not a StopIteration: raised inside a generator, a StopIteration is turned
    into a RuntimeError (PEP 479), and the loop would report a crash instead of a finished replay.
    """


class UnreadableImage(CameraError, OSError):
    """An image file could not be read as a picture."""


class DecoderError(HardwareError):
    """The QR decoder failed in a way that is not 'no code in view'."""


class PassError(StempelError, ValueError):
    """A pass could not be issued or verified."""


class KeyStoreError(StempelError, OSError):
    """Signing or verification keys are missing or unreadable."""


class LedgerError(StempelError, OSError):
    """The kiosk ledger could not be opened or written."""


class MessageError(StempelError, ValueError):
    """An MQTT payload is not a valid message of the protocol (bad JSON, schema or field)."""


class BusError(StempelError, ConnectionError):
    """The message bus (MQTT broker) refused us or could not be reached."""


class NotConnected(BusError):
    """A publish was attempted while the broker connection is down; try again after reconnect."""


class ProvisioningError(StempelError, ValueError):
    """A kiosk or broker account cannot be created as asked (it exists, or its name is taken)."""
