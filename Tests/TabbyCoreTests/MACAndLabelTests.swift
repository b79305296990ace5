import Testing

@testable import TabbyCore

@Suite("MAC addresses")
struct MACAddressTests {
    @Test(arguments: [
        ("aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff"),
        ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"),
        ("00-1a-2B-3c-4D-5e", "00:1a:2b:3c:4d:5e"),
        ("00:00:00:00:00:00", "00:00:00:00:00:00"),
        ("02:42:ac:11:00:02", "02:42:ac:11:00:02"),
    ])
    func parsesAndFormats(text: String, canonical: String) throws {
        let mac = try MACAddress.parse(text)
        #expect(mac.description == canonical)
        #expect(MACAddress(text) == mac)
        #expect(MACAddress(bytes: mac.bytes) == mac)
    }

    @Test(arguments: [
        "", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa-bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:fg", "aabb.ccdd.eeff",
        "a:bb:cc:dd:ee:fff", "aa:bb:cc:dd:ee:ff ", " aa:bb:cc:dd:ee:ff", "aa.bb.cc.dd.ee.ff", "aa:bb:cc:dd:ee:+f",
    ])
    func rejectsInvalidText(text: String) {
        #expect(MACAddress(text) == nil)
        #expect(throws: AddressParseError.self) { try MACAddress.parse(text) }
    }

    @Test func explainsWhichByteIsBad() {
        #expect(
            throws: AddressParseError(
                input: "aa:bb:cc:dd:ee:fg", reason: "byte 6 \"fg\" is not hexadecimal", subject: "MAC address")
        ) { try MACAddress.parse("aa:bb:cc:dd:ee:fg") }
    }

    @Test func bytesAndFlags() throws {
        let mac = try MACAddress.parse("02:42:ac:11:00:02")
        #expect(mac.bytes == [0x02, 0x42, 0xac, 0x11, 0x00, 0x02])
        #expect(mac.isUnicast)
        #expect(mac.isLocallyAdministered)
        let vendor = try MACAddress.parse("00:1a:2b:3c:4d:5e")
        #expect(vendor.isUnicast && !vendor.isLocallyAdministered)
        let broadcast = try MACAddress.parse("ff:ff:ff:ff:ff:ff")
        #expect(!broadcast.isUnicast && broadcast.isMulticast)
        #expect(MACAddress(bytes: [1, 2, 3]) == nil)
        #expect(MACAddress(0x1234_5678_9abc_def0).description == "56:78:9a:bc:de:f0")
    }
}

@Suite("Kubernetes labels")
struct LabelTests {
    private static let name63 = String(repeating: "a", count: 63)
    private static let name64 = String(repeating: "a", count: 64)

    @Test(arguments: [
        "app", "app.kubernetes.io/name", "example.com/app", "a", "A", "my_label", "x-y.z", "a1", name63,
        "example.com/" + name63, String(repeating: "a", count: 253) + "/x", "projectcalico.org/namespace",
    ])
    func acceptsValidKeys(key: String) {
        #expect(LabelRules.problem(withKey: key) == nil)
    }

    @Test(arguments: [
        ("", "key must not be empty"),
        ("-a", "name part \"-a\" must start and end with a letter or digit"),
        ("a-", "name part \"a-\" must start and end with a letter or digit"),
        (name64, "name part must be 63 characters or less (got 64)"),
        (
            "Example.com/app",
            "prefix part \"Example.com\" must be a DNS subdomain of lowercase letters, digits, '-' and '.'"
        ),
        ("/app", "prefix part before '/' must not be empty"),
        ("example.com/", "name part must not be empty"),
        ("a/b/c", "name part \"b/c\" may contain only letters, digits, '-', '_' and '.'"),
        (
            "-example.com/app",
            "prefix part \"-example.com\": each dot-separated part must start and end with a letter or digit"
        ),
        (
            "example..com/app",
            "prefix part \"example..com\": each dot-separated part must start and end with a letter or digit"
        ),
        (
            "exa_mple.com/app",
            "prefix part \"exa_mple.com\" must be a DNS subdomain of lowercase letters, digits, '-' and '.'"
        ),
        (String(repeating: "a", count: 254) + "/x", "prefix part must be 253 characters or less (got 254)"),
        ("has space", "name part \"has space\" may contain only letters, digits, '-', '_' and '.'"),
        ("caf\u{E9}", "name part \"caf\u{E9}\" may contain only letters, digits, '-', '_' and '.'"),
    ])
    func rejectsInvalidKeys(key: String, problem: String) {
        #expect(LabelRules.problem(withKey: key) == problem)
    }

    @Test(arguments: ["", "v1", "Production", "a.b-c_d", name63])
    func acceptsValidValues(value: String) {
        #expect(LabelRules.problem(withValue: value) == nil)
    }

    @Test(arguments: [
        ("-v", "value \"-v\" must start and end with a letter or digit"),
        ("v.", "value \"v.\" must start and end with a letter or digit"),
        (name64, "value must be 63 characters or less (got 64)"),
        ("a/b", "value \"a/b\" may contain only letters, digits, '-', '_' and '.'"),
        ("a=b", "value \"a=b\" may contain only letters, digits, '-', '_' and '.'"),
    ])
    func rejectsInvalidValues(value: String, problem: String) {
        #expect(LabelRules.problem(withValue: value) == problem)
    }

    @Test(
        arguments: [
            ("", [:]),
            ("   ", [:]),
            ("app=web", ["app": "web"]),
            ("app=web,tier=front", ["app": "web", "tier": "front"]),
            (" app=web , tier=front ", ["app": "web", "tier": "front"]),
            ("empty=", ["empty": ""]),
            ("example.com/app=x,B=Y", ["example.com/app": "x", "B": "Y"]),
        ] as [(String, Labels)])
    func parsesLabelLists(text: String, expected: Labels) throws {
        #expect(try Labels.parseLabels(text) == expected)
    }

    @Test(arguments: [
        ("app", "item 1 \"app\" is not of the form key=value"),
        ("app=web,,tier=x", "item 2 is empty"),
        ("app=web,", "item 2 is empty"),
        ("app=web,app=db", "key \"app\" appears more than once"),
        ("=web", "key \"\": key must not be empty"),
        ("-a=web", "key \"-a\": name part \"-a\" must start and end with a letter or digit"),
        ("app=-web", "value of \"app\": value \"-web\" must start and end with a letter or digit"),
        ("app=a=b", "value of \"app\": value \"a=b\" may contain only letters, digits, '-', '_' and '.'"),
    ])
    func rejectsBadLabelLists(text: String, reason: String) {
        #expect(throws: LabelParseError(input: text, reason: reason)) { try Labels.parseLabels(text) }
    }

    @Test func describesLabelsSortedByKey() throws {
        let labels: Labels = ["tier": "front", "app": "web", "example.com/z": ""]
        #expect(labels.labelsDescription == "app=web,example.com/z=,tier=front")
        #expect(try Labels.parseLabels(labels.labelsDescription) == labels)
        #expect(Labels().labelsDescription == "")
        #expect(
            LabelParseError(input: "x", reason: "item 1 \"x\" is not of the form key=value").description
                == "invalid labels \"x\": item 1 \"x\" is not of the form key=value")
    }
}
