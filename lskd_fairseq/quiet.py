"""The third-party warnings a plugin run triggers, silenced so that a one-line error stays readable.

Each is a deprecation or environment notice in code the user does not control (Hydra's compose API as
fairseq calls it, torch APIs fairseq uses, pinned memory on a CPU-only machine); none of them says anything
about the user's run. They are silenced by message or module, so any other warning still shows.
``torch.jit.script``'s notice can still appear once: fairseq triggers it while importing itself, before it
loads the plugin.
"""

import warnings

# (message regex, category, module regex) as warnings.filterwarnings takes them
KNOWN_WARNINGS = [
    ("", UserWarning, r"hydra(\.|$)"),  # Hydra's deprecation notices, all raised inside hydra's own modules
    (r"\s*'config' is validated against ConfigStore schema", UserWarning, ""),  # Hydra, raised at the caller
    (r"\s*The strict flag in the compose API is deprecated", UserWarning, ""),
    (r"`torch\.jit\.script` is deprecated", FutureWarning, ""),
    (r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated", FutureWarning, ""),
    (r"'pin_memory' argument is set as true but no accelerator is found", UserWarning, ""),
    # fairseq's attention passes a float attn_mask with a bool padding mask; torch warns on every forward
    (r"Support for mismatched key_padding_mask and attn_mask", UserWarning, ""),
]


def silence_third_party_warnings() -> None:
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
