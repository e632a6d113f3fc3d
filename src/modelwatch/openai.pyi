from modelwatch.integrations.openai import *  # noqa: F403 - the same module (see modelwatch.integrations)
from modelwatch.integrations.openai import __all__ as __all__
