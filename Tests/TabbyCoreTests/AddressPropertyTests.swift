import PropertyBased
import Testing

@testable import TabbyCore

/// Random IPv6 values with whole zero groups punched in, so that "::" compression and its tie-breaking are
/// exercised far more often than uniformly random 128-bit values would manage.
private let ipv6WithZeroRuns = zip(Gen.uint128(), Gen.uint8()).map { value, zeroGroups in
    var result = value
    for group in 0..<8 where zeroGroups >> UInt8(group) & 1 == 1 {
        result &= ~(UInt128(0xffff) << UInt128(16 * group))
    }
    return IPv6Address(result)
}

/// Random networks of either family with any valid prefix length.
private let anyCIDR = zip(Gen.bool, Gen.uint128(), Gen.int(in: 0...128)).map { isIPv4, value, length in
    isIPv4
        ? CIDR(network: .v4(IPv4Address(UInt32(truncatingIfNeeded: value))), prefixLength: length * 32 / 128)
        : CIDR(network: .v6(IPv6Address(value)), prefixLength: length)
}

@Suite("Address properties")
struct AddressPropertyTests {
    @Test func ipv4TextRoundTrips() async {
        await propertyCheck(input: Gen.uint32()) { value in
            let address = IPv4Address(value)
            #expect(IPv4Address(address.description) == address)
            #expect(IPv4Address(bytes: address.bytes) == address)
        }
    }

    @Test func ipv6TextRoundTrips() async {
        await propertyCheck(input: Gen.uint128()) { value in
            let address = IPv6Address(value)
            #expect(IPv6Address(address.description) == address)
            #expect(IPv6Address(bytes: address.bytes) == address)
        }
    }

    @Test func ipv6CanonicalTextIsStable() async {
        await propertyCheck(count: 500, input: ipv6WithZeroRuns) { address in
            let text = address.description
            let reparsed = IPv6Address(text)
            #expect(reparsed == address)
            #expect(reparsed?.description == text)
            #expect(text == text.lowercased())
            // RFC 5952: "::" appears at most once and never stands for a single zero group.
            #expect(text.split(separator: "::", omittingEmptySubsequences: false).count <= 2)
            if text.contains("::") && !address.isIPv4Mapped {
                #expect(text.split(separator: ":").count <= 6)
            }
            // No group is written with leading zeros.
            #expect(text.split(separator: ":").allSatisfy { $0 == "0" || !$0.hasPrefix("0") })
        }
    }

    @Test func cidrTextRoundTrips() async {
        await propertyCheck(input: anyCIDR) { cidr in
            #expect(CIDR(cidr.description) == cidr)
            #expect((try? CIDR.parse(cidr.description, allowHostBits: false)) == cidr)
        }
    }

    @Test func cidrContainsExactlyItsRange() async {
        await propertyCheck(input: anyCIDR) { cidr in
            #expect(cidr.contains(cidr.firstAddress))
            #expect(cidr.contains(cidr.lastAddress))
            if let beyond = cidr.lastAddress.advanced(by: 1) {
                #expect(!cidr.contains(beyond))
            }
            if let before = cidr.firstAddress.advanced(by: -1) {
                #expect(!cidr.contains(before))
            }
            #expect(cidr.contains(cidr))
        }
    }

    @Test func subnetsTileTheirParent() async {
        await propertyCheck(input: anyCIDR, Gen.int(in: 0...12), Gen.uint128()) { parent, extraBits, randomIndex in
            let subnetLength = min(parent.prefixLength + extraBits, parent.network.bitWidth)
            let subnets = try #require(try? parent.subnets(prefixLength: subnetLength))
            let leading = Array(subnets.prefix(6))
            var sample = leading + [subnets.last]
            if let random = subnets.subnet(at: randomIndex % subnets.count) { sample.append(random) }
            for subnet in sample {
                #expect(parent.contains(subnet))
                #expect(subnet.prefixLength == subnetLength)
            }
            for (index, subnet) in sample.enumerated() {
                for other in sample[(index + 1)...] where other != subnet {
                    #expect(!subnet.overlaps(other))
                }
            }
            // Consecutive blocks are adjacent, so the split leaves no gaps.
            for (current, next) in zip(leading, leading.dropFirst()) {
                #expect(current.lastAddress.advanced(by: 1) == next.firstAddress)
            }
            #expect(leading.first == subnets.first)
            #expect(subnets.last.lastAddress == parent.lastAddress)
        }
    }

    @Test func offsetInvertsAddressAt() async {
        await propertyCheck(input: anyCIDR, Gen.uint128()) { cidr, randomOffset in
            let offset = cidr.hostBitCount == 128 ? randomOffset : randomOffset % cidr.size
            let address = try #require(cidr.address(at: offset))
            #expect(cidr.offset(of: address) == offset)
            if offset <= UInt128(Int128.max) {
                #expect(cidr.firstAddress.advanced(by: Int128(offset)) == address)
            }
        }
    }
}
