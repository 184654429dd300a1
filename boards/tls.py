# The TLS client every board's network offers (esp32_common.WifiLink and the
# simulated unix.HostNet as wrap_tls): one implementation, so the tests on
# the unix board run the code an ESP32 runs. MicroPython's ssl (mbedTLS);
# the unix port has ssl, not ussl.


def wrap_tls(sock, server_hostname, cadata):
    """TLS client over a connected socket; the server's certificate must
    chain to cadata (DER) and match server_hostname."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # documented SSLContext attribute (default CERT_NONE in MicroPython),
    # missing from the port's type stubs
    setattr(ctx, "verify_mode", ssl.CERT_REQUIRED)
    if cadata:
        ctx.load_verify_locations(cadata=cadata)
    # the link drives the handshake on its non-blocking socket: each
    # write() takes it one step further (comms/net.py)
    return ctx.wrap_socket(sock, server_hostname=server_hostname,
                           do_handshake_on_connect=False)
