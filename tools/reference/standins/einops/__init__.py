"""Stand-in for einops.rearrange (see ../README.md): patterns of named axes and parenthesised groups,
e.g. "b c t h w -> (b t) c h w" or "b c f (h q) (w r) -> b (c r q) f h w" with q=2, r=2."""
import math


def _groups(side):
    """'b (c r q) h' -> [['b'], ['c', 'r', 'q'], ['h']]."""
    groups, current = [], None
    for token in side.replace('(', ' ( ').replace(')', ' ) ').split():
        if token == '(':
            current = []
        elif token == ')':
            groups.append(current)
            current = None
        elif current is not None:
            current.append(token)
        else:
            groups.append([token])
    return groups


def rearrange(x, pattern, **sizes):
    left, right = (_groups(s) for s in pattern.split('->'))
    if len(left) != x.dim():
        raise ValueError(f'rearrange: "{pattern}" names {len(left)} axes, the tensor has {x.dim()}')
    known = dict(sizes)
    for group, size in zip(left, x.shape):
        unknown = [a for a in group if a not in known]
        if len(unknown) > 1:
            raise ValueError(f'rearrange: cannot split {group} without sizes for {unknown[1:]}')
        rest = math.prod(known[a] for a in group if a in known)
        if unknown:
            known[unknown[0]] = size // rest
        elif rest != size:
            raise ValueError(f'rearrange: group {group} is {rest}, the axis is {size}')
    elementary = [a for g in left for a in g]
    x = x.reshape([known[a] for a in elementary])
    order = [a for g in right for a in g]
    x = x.permute([elementary.index(a) for a in order])
    return x.reshape([math.prod(known[a] for a in g) for g in right])
