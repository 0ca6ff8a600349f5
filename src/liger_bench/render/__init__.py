"""Render: write the ``Analysis`` as the HTML report, the Markdown summary, figures and tables.

analyze_results runs this stage last; it never re-reads raw results. It imports the shared
top-level modules and every earlier stage.
"""
