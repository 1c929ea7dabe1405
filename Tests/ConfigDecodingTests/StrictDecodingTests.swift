import ConfigDecoding
import Foundation
import Testing
import Yams

/// Strict decoding (issue #13): unknown keys at every level name their path and the nearest known key;
/// wrong types name the path and the expected type — for YAML and JSON alike.
struct StrictDecodingTests {
    struct Leaf: Decodable, Equatable {
        var rtstruct: Bool?
        var seg: Bool?
        enum CodingKeys: String, CodingKey, CaseIterable { case rtstruct, seg }
    }

    struct Item: Decodable, Equatable {
        var label: Int
        var color: [Int]?
        enum CodingKeys: String, CodingKey, CaseIterable { case label, color }
    }

    struct Document: Decodable, Equatable {
        var name: String
        var outputs: Leaf?
        var items: [Item]?
        var table: [String: Leaf]?
        enum CodingKeys: String, CodingKey, CaseIterable { case name, outputs, items, table }
    }

    func yaml(_ text: String) throws -> Document {
        try StrictDecoding.decode { try YAMLDecoder().decode(StrictDecoding.Root<Document>.self, from: text).value }
    }

    func json(_ text: String) throws -> Document {
        try StrictDecoding.decode { try JSONDecoder().decode(StrictDecoding.Root<Document>.self, from: Data(text.utf8)).value }
    }

    @Test func validDocumentsDecode() throws {
        let expected = Document(name: "x", outputs: Leaf(rtstruct: false, seg: nil), items: [Item(label: 1, color: [1, 2, 3])],
                                table: ["a": Leaf(rtstruct: true, seg: true)])
        #expect(try yaml("name: x\noutputs: {rtstruct: false}\nitems: [{label: 1, color: [1, 2, 3]}]\ntable: {a: {rtstruct: true, seg: true}}\n") == expected)
        #expect(try json(#"{"name": "x", "outputs": {"rtstruct": false}, "items": [{"label": 1, "color": [1, 2, 3]}], "table": {"a": {"rtstruct": true, "seg": true}}}"#) == expected)
    }

    @Test(arguments: [
        ("name: x\noutputs: {rtstuct: false}\n", "outputs.rtstuct", "unknown key (did you mean rtstruct?; known: rtstruct, seg)"),
        ("name: x\ncolour: red\n", "colour", "unknown key (known: items, name, outputs, table)"),
        ("name: x\nitems: [{label: 1}, {label: 2, colr: [1, 2, 3]}]\n", "items[1].colr", "unknown key (did you mean color?; known: color, label)"),
        ("name: x\ntable: {a: {segg: true}}\n", "table.a.segg", "unknown key (did you mean seg?; known: rtstruct, seg)"),
        ("name: x\noutputs: {seg: maybe}\n", "outputs.seg", "must be true or false"),
        ("name: x\nitems: [{label: one}]\n", "items[0].label", "must be a whole number"),
        ("name: x\nitems: [{color: [1, 2, 3]}]\n", "items[0].label", "required"),
        ("name: x\nitems: {label: 1}\n", "items", "must be a list"),
        ("name: x\noutputs: [1]\n", "outputs", "must be a mapping"),
    ])
    func yamlIssuesNameThePath(_ text: String, _ path: String, _ detail: String) throws {
        let issue = #expect(throws: ConfigurationIssue.self) { try yaml(text) }
        #expect(issue?.path == path, "\(issue?.description ?? "no issue")")
        #expect(issue?.detail == detail, "\(issue?.description ?? "no issue")")
    }

    @Test func jsonIssuesNameThePath() throws {
        let issue = #expect(throws: ConfigurationIssue.self) { try json(#"{"name": "x", "items": [{"label": 1, "colour": [1]}]}"#) }
        #expect(issue?.path == "items[0].colour")
        #expect(issue?.detail.hasPrefix("unknown key (did you mean color?") == true)
    }
}
