"""ipywidgets labs, one module per topic, each around library code it calls (never re-derives):

- ``text``: the sampling lab and the attention viewer (notebook 01);
- ``experts``: the MoE calculator (02), the routing explorer (03) and the expert colouring (05);
- ``balancing``: the live balancing lab with Run and Stop (04);
- ``licences``: the licence checker (07).

Each builder returns the widget and keeps its controls as attributes, so tests (and the browser test) can move a
control and read the output.
"""
