"""Stand-in: ConfigMixin and register_to_config (init arguments recorded as `self.config`, before
__init__ runs, so __init__ may read them, as in diffusers)."""
import functools
import inspect


class FrozenDict(dict):

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class ConfigMixin:
    config_name = 'config.json'
    ignore_for_config = []

    def register_to_config(self, **kwargs):
        merged = dict(self.__dict__.get('_internal_dict', {}))
        merged.update(kwargs)
        object.__setattr__(self, '_internal_dict', FrozenDict(merged))

    @property
    def config(self):
        return self.__dict__.get('_internal_dict', FrozenDict())


def register_to_config(init):
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        ignore = set(getattr(self, 'ignore_for_config', []))
        values = {k: v for k, v in bound.arguments.items() if k != 'self' and k not in ignore and not k.startswith('_')}
        ConfigMixin.register_to_config(self, **values)
        init(self, *args, **kwargs)

    return wrapped
