from app.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable


class UnknownOrganization(NotFound):
    code = "organization_not_found"
    default_detail = "No such organization."


class UnknownCategory(InvalidInput):
    code = "unknown_category"


class InvalidQuantity(InvalidInput):
    code = "invalid_quantity"


class MeterUnavailable(ServiceUnavailable):
    code = "meter_unavailable"
    default_detail = "The quota store is unreachable; try again shortly."


class UnknownLease(NotFound):
    code = "lease_not_found"
    default_detail = "No such lease, or its unused units were returned already."


class PeriodExpired(InvalidInput):
    code = "period_expired"
    default_detail = "That period's counters have expired; the refund cannot be applied."


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    default_detail = "This idempotency key was used for a different request."
