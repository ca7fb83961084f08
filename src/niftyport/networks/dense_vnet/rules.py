"""NiftyNet's DenseVNet variable names <-> :class:`~.module.DenseVNet` keys.

NiftyNet (``niftynet/network/dense_vnet.py``) names, under the network's
scope (``DenseVNet`` by default):

* ``batch_norm/{gamma,beta,moving_mean,moving_variance}``: the BN of the
  average-pooled input -> ``downsample_bn``;
* ``conv_bn/conv_/w``, ``conv_bn/bn_/...``: the initial 5x5x5 stride-2 conv -> ``initial_conv``;
* ``dense_feature_stack_block[_B]/``: dense block B (no suffix for block 0),
  holding ``dense_feature_stack_block/conv_bn_relu[_J]`` (dense conv J, no
  suffix for 0) -> ``blocks.B.dfs.J``, ``conv_bn_relu`` (the skip conv) ->
  ``blocks.B.skip_conv`` and ``conv_bn_relu_1`` (the stride-2 down conv) ->
  ``blocks.B.down_conv``;
* ``conv/conv_/{w,b}``: the final conv with bias -> ``final_conv``;
* ``spatial_prior_block/prior`` (with ``use_prior``) -> ``spatial_prior.prior``,
  kept in NiftyNet's layout ``(1, P, P, P, 1)``.

The same names serve every hyper-parameter setting (the rules do not
depend on them); 2-D networks need ``spatial_dims=2`` for the kernels' layout.
"""
from __future__ import annotations

from ...mapping import Rule, RuleSet, bn_rules

_TRANSFORM = {3: "conv3d_dhwio_to_oidhw", 2: "conv2d_hwio_to_oihw"}
_BLOCK = "dense_feature_stack_block"


def _conv_bn_rules(source: str, target: str, transform: str) -> list[Rule]:
    return [Rule(f"{source}/conv_/w", f"{target}.conv.weight", transform), *bn_rules(f"{source}/bn_", f"{target}.bn")]


def _block_rules(block_scope: str, block_key: str, transform: str) -> list[Rule]:
    """One dense block's rules; ``block_scope``/``block_key`` may hold the ``{b}`` field."""
    dfs = f"{block_scope}/{_BLOCK}/conv_bn_relu"
    return [
        *_conv_bn_rules(dfs, f"{block_key}.dfs.0", transform),
        *_conv_bn_rules(dfs + r"_{j:[1-9]\d*}", f"{block_key}.dfs.{{j}}", transform),
        *_conv_bn_rules(f"{block_scope}/conv_bn_relu", f"{block_key}.skip_conv", transform),
        *_conv_bn_rules(f"{block_scope}/conv_bn_relu_1", f"{block_key}.down_conv", transform),
    ]


def niftynet_rules(scope: str = "DenseVNet", *, acti_func: str = "relu", spatial_dims: int = 3,
                   **_: object) -> RuleSet:
    """Rules for a NiftyNet DenseVNet under name scope ``scope`` (``acti_func`` does not change the names)."""
    del acti_func  # NiftyNet's DenseVNet hard-codes ReLU, so its scopes never change with it
    t = _TRANSFORM[spatial_dims]
    rules = [
        *bn_rules(f"{scope}/batch_norm", "downsample_bn"),
        *_conv_bn_rules(f"{scope}/conv_bn", "initial_conv", t),
        *_block_rules(f"{scope}/{_BLOCK}", "blocks.0", t),
        *_block_rules(f"{scope}/{_BLOCK}" + r"_{b:[1-9]\d*}", "blocks.{b}", t),
        Rule(f"{scope}/conv/conv_/w", "final_conv.weight", t),
        Rule(f"{scope}/conv/conv_/b", "final_conv.bias"),
        Rule(f"{scope}/spatial_prior_block/prior", "spatial_prior.prior"),
    ]
    suffix = "" if (scope, spatial_dims) == ("DenseVNet", 3) else f" ({scope}, {spatial_dims}-D)"
    return RuleSet(tuple(rules), name=f"DenseVNet NiftyNet rules{suffix}")


#: The model zoo's network (``dense_vnet_abdominal_ct``, scope ``DenseVNet``, 3-D).
DENSE_VNET_NIFTYNET_RULES = niftynet_rules()
