import Testing

@testable import TabbyCore

@Suite("SHA-1 (for Calico's host veth names)")
struct SHA1Tests {
    /// FIPS 180 vectors plus values computed by Python's hashlib (padding edge cases: 55, 56, 64 and
    /// 1000 bytes).
    @Test(arguments: [
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
        ("default.nginx", "c440f455693b69cdd48a37aa5ecd78038f50413d"),
        ("kube-system.coredns-5d78c9869d-abcde", "4d5f75c480cc7f4ead7f9379346b00d119f4b71c"),
        (String(repeating: "x", count: 64), "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163"),
        (String(repeating: "a", count: 1000), "291e9a6c66994949b57ba5e650361e98fc36b1ba"),
    ])
    func digests(message: String, expected: String) {
        #expect(SHA1.hex(of: Array(message.utf8)) == expected)
    }
}
