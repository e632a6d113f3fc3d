from modelwatch.integrations.huggingface import *  # noqa: F403 - the same module (see modelwatch.integrations)
from modelwatch.integrations.huggingface import __all__ as __all__
