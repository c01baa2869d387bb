"""The one exception type of user mistakes, below every other module (no imports)."""


class UserError(Exception):
  """A problem with the user's input (options, files, data): reported in one line, exit 2."""
