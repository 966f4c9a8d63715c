"""The one exception type for mistakes a user can make and fix."""


class UserError(Exception):
    """A problem with the user's input: printed as one line on stderr, exit code 2."""
