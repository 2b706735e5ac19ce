"""The permission matrix: every operation x standing x sphere type, over WebSocket and HTTP.

- ``samples``: a sample request for every row of the operation table, built from a context;
- ``wire``: a pipelining WebSocket session and the HTTP form of a frame;
- ``world``: the users and spheres the cases run in, and the runner that computes each cell.
"""
