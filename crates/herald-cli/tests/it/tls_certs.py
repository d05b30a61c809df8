"""Makes a throwaway CA and server certificates for the inbound TLS tests (listener.rs).

Usage: tls_certs.py DIRECTORY

Writes into DIRECTORY, all PEM:
  ca.pem              the CA's certificate (what a client trusts)
  server.pem          a certificate for 127.0.0.1 and localhost signed by the CA
  server.key          its EC P-256 key, PKCS#8
  server-sec1.key     the same key, SEC1 (-----BEGIN EC PRIVATE KEY-----)
  other.key           another EC key, PKCS#8: does not match server.pem
  rsa.pem, rsa.key    an RSA certificate signed by the CA and its key, PKCS#1

Needs the `cryptography` package (PyPI); prints OK when done.
"""

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM
NO_PASSWORD = serialization.NoEncryption()


def name(text):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def builder(subject, key, issuer):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


USAGE = dict(content_commitment=False, data_encipherment=False, key_agreement=False,
             encipher_only=False, decipher_only=False)


def server_certificate(key, ca_key, ca_name):
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return (
        builder(name("127.0.0.1"), key, ca_name)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                     key_cert_sign=False, crl_sign=False, **USAGE),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def write(directory, file_name, data):
    with open(os.path.join(directory, file_name), "wb") as out:
        out.write(data)


def main():
    directory = sys.argv[1]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"herald listener test CA {os.getpid()}")
    ca = (
        builder(ca_name, ca_key, ca_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     key_cert_sign=True, crl_sign=True, **USAGE),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write(directory, "ca.pem", ca.public_bytes(PEM))

    key = ec.generate_private_key(ec.SECP256R1())
    write(directory, "server.pem", server_certificate(key, ca_key, ca_name).public_bytes(PEM))
    write(directory, "server.key",
          key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NO_PASSWORD))
    write(directory, "server-sec1.key",
          key.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, NO_PASSWORD))
    other = ec.generate_private_key(ec.SECP256R1())
    write(directory, "other.key",
          other.private_bytes(PEM, serialization.PrivateFormat.PKCS8, NO_PASSWORD))

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write(directory, "rsa.pem", server_certificate(rsa_key, ca_key, ca_name).public_bytes(PEM))
    write(directory, "rsa.key",
          rsa_key.private_bytes(PEM, serialization.PrivateFormat.TraditionalOpenSSL, NO_PASSWORD))
    print("OK")


if __name__ == "__main__":
    main()
