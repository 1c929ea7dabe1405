import Foundation
import PlansModel
import Testing

/// Plans and dataset.json invariants are checked once, on load (issue #13): an invalid entry is an error
/// naming the file and the key, never dropped and never left to a precondition deep in a kernel.
struct PlansValidationTests {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url
    }()
    static let plansURL = root.appendingPathComponent("Fixtures/demo/model/plans.json")
    static let datasetURL = root.appendingPathComponent("Fixtures/demo/model/dataset.json")

    /// The demo plans with one edit applied to its JSON, loaded (3d_fullres resolved).
    func load(_ edit: (inout [String: Any]) -> Void) throws {
        var document = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: Self.plansURL)) as? [String: Any])
        edit(&document)
        let plans = try Plans(data: JSONSerialization.data(withJSONObject: document), source: "plans.json")
        _ = try plans.configuration("3d_fullres")
    }

    func editConfiguration(_ document: inout [String: Any], _ edit: (inout [String: Any]) -> Void) {
        var configurations = document["configurations"] as! [String: Any]
        var c = configurations["3d_fullres"] as! [String: Any]
        edit(&c)
        configurations["3d_fullres"] = c
        document["configurations"] = configurations
    }

    func editArchitecture(_ document: inout [String: Any], _ edit: @escaping (inout [String: Any]) -> Void) {
        editConfiguration(&document) { c in
            var architecture = c["architecture"] as! [String: Any]
            var kwargs = architecture["arch_kwargs"] as! [String: Any]
            edit(&kwargs)
            architecture["arch_kwargs"] = kwargs
            c["architecture"] = architecture
        }
    }

    @Test func theDemoPlansLoad() throws {
        try load { _ in }
    }

    /// The FuzzPlans crasher with an empty label list is refused by name.
    @Test func anEmptyLabelListIsRefused() throws {
        let url = Self.root.appendingPathComponent("Fixtures/fuzz/crashers/dataset-label-empty-list.json")
        let error = #expect(throws: PlansError.self) { try DatasetDescription(data: Data(contentsOf: url), source: url.path) }
        #expect(error?.description.contains("non-empty list") == true, "\(error?.description ?? "")")
    }

    /// A FuzzPlans crasher (Fixtures/fuzz/crashers/plans-median-shape-beyond-int.json): a median shape of
    /// 3.9 × 10⁸⁷ voxels was converted to Int and trapped. Refused with the key now.
    @Test func aMedianShapeBeyondIntIsRefused() throws {
        let url = Self.root.appendingPathComponent("Fixtures/fuzz/crashers/plans-median-shape-beyond-int.json")
        let error = #expect(throws: PlansError.self) { try Plans(data: Data(contentsOf: url), source: url.path) }
        #expect(error?.description.contains("original_median_shape_after_transp") == true, "\(error?.description ?? "")")
        #expect(throws: PlansError.self) { try load { $0["original_median_shape_after_transp"] = [36, 50, 1e20] } }
    }

    @Test func invalidEntriesNameTheKey() throws {
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("transpose_forward", { $0["transpose_forward"] = [0, 0, 1] }),
            ("transpose_backward", { $0["transpose_backward"] = [1, 0, 2] }),  // forward is [0, 1, 2]
            ("original_median_spacing_after_transp", { $0["original_median_spacing_after_transp"] = [1, "x", 1] }),
            ("configurations.3d_fullres.normalization_schemes[0]", { d in editConfiguration(&d) { $0["normalization_schemes"] = ["ZScoreNormalisation"] } }),
            ("configurations.3d_fullres.use_mask_for_norm", { d in editConfiguration(&d) { $0["use_mask_for_norm"] = [1, "no"] } }),
            ("configurations.3d_fullres.resampling_fn_data_kwargs.order", { d in
                editConfiguration(&d) { $0["resampling_fn_data_kwargs"] = ["is_seg": false, "order": 7, "order_z": 0] } }),
            ("configurations.3d_fullres.patch_size", { d in editConfiguration(&d) { $0["patch_size"] = [0, 40, 56] } }),
            ("configurations.3d_fullres.architecture.arch_kwargs.n_conv_per_stage_decoder", { d in
                editArchitecture(&d) { $0["n_conv_per_stage_decoder"] = [2] } }),
            ("configurations.3d_fullres.architecture", { d in
                editArchitecture(&d) { k in k["kernel_sizes"] = Array((k["kernel_sizes"] as! [Any]).dropLast()) } }),
            ("configurations.3d_fullres.architecture", { d in editArchitecture(&d) { k in k["features_per_stage"] = (k["features_per_stage"] as! [Int]).map { _ in -1 } } }),
        ]
        for (key, edit) in cases {
            let error = #expect(throws: PlansError.self) { try load(edit) }
            #expect(error?.key == key, "\(error?.description ?? "no error for \(key)")")
            #expect(error?.file == "plans.json")
        }
    }

    @Test func datasetJSONEntriesAreChecked() throws {
        let base = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: Self.datasetURL)) as? [String: Any])
        _ = try DatasetDescription(data: JSONSerialization.data(withJSONObject: base), source: "dataset.json")
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("labels.Posterior", { d in var l = d["labels"] as! [String: Any]; l["Posterior"] = 1; d["labels"] = l }),
            ("labels.Posterior", { d in var l = d["labels"] as! [String: Any]; l["Posterior"] = 70000; d["labels"] = l }),
            // A FuzzPlans crasher (Fixtures/fuzz/crashers/dataset-label-empty-list.json): an empty list was indexed.
            ("labels.Posterior", { d in var l = d["labels"] as! [String: Any]; l["Posterior"] = [Int](); d["labels"] = l }),
            ("numTraining", { $0["numTraining"] = "many" }),
            ("file_ending", { $0["file_ending"] = 3 }),
            ("regions_class_order", { $0["regions_class_order"] = "1,2" }),
        ]
        for (key, edit) in cases {
            var document = base
            edit(&document)
            let error = #expect(throws: PlansError.self) { try DatasetDescription(data: JSONSerialization.data(withJSONObject: document), source: "dataset.json") }
            #expect(error?.key == key, "\(error?.description ?? "no error for \(key)")")
        }
    }
}
