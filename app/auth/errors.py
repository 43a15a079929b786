from app.errors import Forbidden, Unauthorized


class MissingCredentials(Unauthorized):
    default_detail = "Send 'Authorization: Bearer <token>'."


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    default_detail = "The credentials are not valid (unknown, revoked or malformed)."


class ScopeRequired(Forbidden):
    code = "insufficient_scope"
