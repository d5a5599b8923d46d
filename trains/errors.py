"""One error tree for the whole project. Every message says what happened and what to do."""


class PhtError(Exception):
    """Base of every error a user can hit; the CLIs print its message, never a traceback."""


class ConfigError(PhtError):
    """A configuration file or value is missing or wrong."""


class KeyFileError(PhtError):
    """A key file is missing, unreadable or of the wrong kind."""


class SignatureInvalid(PhtError):
    """A signature does not verify, or was made by a key nobody pinned."""


class ManifestInvalid(PhtError):
    """A manifest is malformed, expired or inconsistent."""


class RouteMismatch(PhtError):
    """A hop does not match the route the manifest pins (wrong station, key or order)."""


class PolicyRejected(PhtError):
    """A station's policy refuses this train."""


class SealError(PhtError):
    """A sealed state cannot be opened: wrong key, tampered bytes or a foreign format."""


class StateInvalid(PhtError):
    """A state folder or archive holds something a state may not hold."""


class StateTooLarge(StateInvalid):
    """A state exceeds the size cap."""


class ReceiptChainBroken(PhtError):
    """The hop receipts of a train do not form one unbroken, correctly signed chain."""


class ImageError(PhtError):
    """An image cannot be built, pushed or pulled by digest."""


class TrainFailed(PhtError):
    """The train's own code failed inside its container."""


class CentralError(PhtError):
    """Central answered with an error or could not be reached."""


class DisclosureRefused(PolicyRejected):
    """An output would disclose too much (e.g. counts below the station's minimum cell)."""


class HopDeferred(PhtError):
    """A hop cannot go on right now (Docker or central unreachable); it is kept and retried."""


class CentralUnreachable(CentralError):
    """Central could not be reached or answered 5xx: worth retrying later."""


class TrainRefused(TrainFailed):
    """The train refused to contribute, with a code from the runtime's fixed vocabulary."""


class SealedToOthers(SealError):
    """A sealed state's header names other recipients than the manifest requires."""


class PayloadInvalid(SignatureInvalid, ValueError):
    """A signed envelope's payload is not what it claims to be (not base64, not a valid
    manifest or receipt). Also a ValueError, as any parse error."""


class NotEndorsed(PhtError):
    """A station's keys are not vouched for: no valid enrolment by the pinned network root,
    or (without a root) not the fingerprints the researcher confirmed."""


class BadAnswer(CentralUnreachable):
    """Central's answer is not a valid message (a broken proxy or a man-in-the-middle): it
    is dropped, and the request is made again later."""


class BudgetExceeded(PolicyRejected):
    """A release would spend more of a researcher's privacy budget (ε) on a dataset than the
    station's policy leaves; nothing was charged and nothing was released."""
