import Foundation
import Testing

@testable import TabbyCore

@Suite struct TimestampTests {
    @Test func formatsWholeSecondsAndMilliseconds() {
        let date = Date(timeIntervalSince1970: 1_795_872_968.1239)  // 2026-11-28T13:36:08.123Z
        #expect(Timestamp.format(date) == "2026-11-28T13:36:08Z")
        #expect(Timestamp.format(date, milliseconds: true) == "2026-11-28T13:36:08.123Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -1), milliseconds: true) == "1969-12-31T23:59:59.000Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00Z")
    }

    @Test func agreesWithFoundationOverManyDates() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<2000 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let seconds = Double(seed % 8_000_000_000) - 2_000_000_000
            let date = Date(timeIntervalSince1970: seconds)
            let text = Timestamp.format(date)
            #expect(text == formatter.string(from: date))
            #expect(Timestamp.parse(text) == date)
        }
    }

    @Test func parsesOffsetsAndFractions() {
        #expect(Timestamp.parse("2026-11-28T14:36:08+01:00") == Timestamp.parse("2026-11-28T13:36:08Z"))
        #expect(Timestamp.parse("2026-11-28t13:36:08.5z")!.timeIntervalSince1970 == 1_795_872_968.5)
    }

    @Test(arguments: [
        "", "2026-11-28", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-28T24:00:00Z",
        "2026-11-28T13:36:08", "2026-11-28T13:36:08.Z", "2026-11-28T13:36:08Zjunk", "2026-11-28T13:36:08+0100",
    ])
    func refusesMalformedText(_ text: String) {
        #expect(Timestamp.parse(text) == nil)
    }
}

@Suite struct JSONWritingTests {
    @Test func writesCompactSortedJSON() {
        let value = JSONValue.object([
            "z": .array([.int(1), .bool(true), .null, .double(2.5), .double(3)]),
            "a": .string("path/with \"quotes\" \\ and\nnewline \u{01}"),
            "m": .object([:]),
        ])
        #expect(
            value.serialized()
                == #"{"a":"path/with \"quotes\" \\ and\nnewline \u0001","m":{},"z":[1,true,null,2.5,3]}"#)
        #expect(JSONValue.double(.nan).serialized() == "null")
    }

    @Test func roundTripsThroughFoundation() throws {
        let value = JSONValue.object([
            "name": .string("ünïcode ✓ \t tab"), "list": .array([.int(-7), .string("")]),
            "nested": .object(["k": .null]),
        ])
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(value.serialized().utf8))
        #expect(decoded == value)
    }
}

@Suite struct JSONParsingTests {
    @Test func parsesEveryKindOfValue() throws {
        let text =
            #" { "a" : [1, -2, 3.5, 1e3, true, false, null], "s": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "o": {} } "#
        let value = try JSONValue.parse(Data(text.utf8))
        #expect(
            value
                == .object([
                    "a": .array([.int(1), .int(-2), .double(3.5), .double(1000), .bool(true), .bool(false), .null]),
                    "s": .string("x\"\\/\u{08}\u{0C}\n\r\t\u{E9}\u{1F600}"), "o": .object([:]),
                ]))
    }

    @Test func agreesWithFoundationOnWhatItWrites() throws {
        var seed: UInt64 = 42
        func next() -> UInt64 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return seed >> 33
        }
        func random(depth: Int) -> JSONValue {
            switch next() % (depth > 3 ? 4 : 6) {
            case 0: return .int(Int(next()) - 1_000_000)
            case 1:
                return .string(
                    String((0..<Int(next() % 8)).map { _ in Character(Unicode.Scalar(UInt8(next() % 126 + 1))) }))
            case 2: return .bool(next() % 2 == 0)
            case 3: return .null
            case 4: return .array((0..<Int(next() % 4)).map { _ in random(depth: depth + 1) })
            default:
                var object: [String: JSONValue] = [:]
                for _ in 0..<Int(next() % 4) { object["k\(next() % 100)"] = random(depth: depth + 1) }
                return .object(object)
            }
        }
        for _ in 0..<300 {
            let value = random(depth: 0)
            let text = Data(value.serialized().utf8)
            #expect(try JSONValue.parse(text) == value)
            #expect(try JSONDecoder().decode(JSONValue.self, from: text) == value)
        }
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"unterminated", "\"bad \\x escape\"", "[1] 2", "tru",
        "\"\\ud800\"", "\"tab\there\"",
    ])
    func refusesMalformedText(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Data(text.utf8)) }
    }
}
