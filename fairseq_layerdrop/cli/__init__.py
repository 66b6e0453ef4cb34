"""The installed command ``fairseq-layerdrop SUBCOMMAND``: the plugin's tools, one module per subcommand.

fairseq's ``--user-dir`` import loads ``fairseq_layerdrop`` (models, tasks, criterions), never this
package: these modules are imported only by the command (``main.py`` dispatches to them).
"""
