"""Code to put at the top of a subprocess's script so that any network access raises instead of connecting."""

BLOCK_SOCKETS = '''
import socket
def _refuse(*args, **kwargs):
    raise OSError("network access attempted: " + repr(args)[:120])
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''
