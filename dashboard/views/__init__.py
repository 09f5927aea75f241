"""The dashboard's views, one page script each; ``dashboard/app.py`` lists them in ``VIEWS``.
A view reads the sidebar's choices with ``dashboard.inputs.current_context()`` and renders."""
