"""Stand-in for easydict.EasyDict (see ../README.md): a dict whose keys are also attributes, as the
official wan/configs build and copy their task configs."""


class EasyDict(dict):

    def __init__(self, d=None, **kwargs):
        super().__init__()
        self.update(d, **kwargs)

    @staticmethod
    def _wrap(value):
        if isinstance(value, dict) and not isinstance(value, EasyDict):
            return EasyDict(value)
        if isinstance(value, (list, tuple)):
            return type(value)(EasyDict._wrap(v) for v in value)
        return value

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __setitem__(self, name, value):
        super().__setitem__(name, self._wrap(value))

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def update(self, e=None, **kwargs):
        for k, v in dict(e or {}, **kwargs).items():
            self[k] = v
