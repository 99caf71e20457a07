"""One module per pipeline stage, each with the one path-in/path-out function that its
rule runs: `workflow/scripts/*` and `sidrec/cli/*` only unpack arguments and call it.

Kept apart (not one module) on purpose: a rule's code inputs are the modules its entry
point imports (workflow/code_inputs.py), so a stage module must import only what its
own stage runs. This file stays empty of imports for the same reason.
"""
