from app.errors import Conflict, InvalidInput, ServiceUnavailable


class UnknownFeature(InvalidInput):
    code = "unknown_feature"


class SeatLimitReached(Conflict):
    code = "seat_limit_reached"
    default_detail = "The organization has as many members as its plan allows."


class TrialNotAvailable(Conflict):
    code = "trial_not_available"
    default_detail = "This organization cannot start a trial of this plan."


class TrialAlreadyUsed(Conflict):
    code = "trial_already_used"
    default_detail = "This organization has already had a trial of this plan."


class TrialInProgress(Conflict):
    code = "trial_in_progress"
    default_detail = "A trial is already running for this organization."


class TrialTooLong(InvalidInput):
    code = "trial_too_long"


class SeatsUnavailable(ServiceUnavailable):
    code = "seats_unavailable"
    default_detail = "The seat count could not be recorded; nothing changed, try again shortly."
