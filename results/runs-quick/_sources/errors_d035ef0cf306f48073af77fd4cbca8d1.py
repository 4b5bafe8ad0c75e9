"""The one exception type that the command lines turn into a one-line message and exit status 2."""


class UserError(ValueError):
    """Bad input from the user (arguments, config, data on disk): the message names the problem and the fix."""
