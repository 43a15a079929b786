from app.errors import Conflict, InvalidInput, NotFound


class OrganizationNotFound(NotFound):
    code = "organization_not_found"
    default_detail = "No such organization."


class SlugTaken(Conflict):
    code = "slug_taken"
    default_detail = "An organization with this slug exists."


class UnknownPlan(InvalidInput):
    code = "unknown_plan"


class InvalidOverrides(InvalidInput):
    code = "invalid_overrides"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
    default_detail = "No such API key."
