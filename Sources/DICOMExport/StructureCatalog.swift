import Foundation

/// What the clinic sees for a structure a model names: a TG-263-style ROI name, SNOMED CT codes, the RT ROI
/// Interpreted Type and a display colour (issue #17). Used when a profile says nothing about a label (and by
/// `nnseg export`); a profile entry overrides it per label.
///
/// Keys are the model's label names compared without case or punctuation, so TotalSegmentator's `kidney_left`,
/// the TG-263 `Kidney_L` and `Kidney-L` all find the same entry. Names follow TG-263's rules (root first,
/// laterality suffix `_L`/`_R`, at most 16 characters so Eclipse-style IDs keep them whole). Codes are SNOMED
/// CT (scheme SCT) as DICOM's context groups use them (CID 4, 7150, 10044); where a finer concept is not
/// certain the entry uses the broader one that is (Bone, Muscle, Vein) with a laterality modifier, never a
/// guessed code.
///
/// ```swift
/// let liver = StructureCatalog.describe(label: 5, name: "liver")   // "Liver", SCT 10200004
/// let colored = StructureCatalog.distinctColors(structures)        // no two alike
/// ```
public enum StructureCatalog {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var category: CodedConcept
        public var type: CodedConcept
        public var modifier: CodedConcept?
        public var interpretedType: String
        public var color: SIMD3<UInt8>
    }

    // Codes used below (SNOMED CT).
    static let right = CodedConcept("24028007", "SCT", "Right")
    static let left = CodedConcept("7771000", "SCT", "Left")
    static let alteredStructure = CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
    static let bone = CodedConcept("272673000", "SCT", "Bone")
    static let muscle = CodedConcept("71616004", "SCT", "Muscle")
    static let vein = CodedConcept("29092000", "SCT", "Vein")
    static let rib = CodedConcept("113197003", "SCT", "Rib")

    /// The entry for a model's label name, nil when the name is not known.
    public static func entry(for name: String) -> Entry? { table[key(name)] }

    /// A description for a model label: the catalog's entry when the name is known, otherwise the name itself
    /// (at most 64 characters) coded as Tissue with a colour from ``palette``.
    public static func describe(label: Int, name: String) -> StructureDescription {
        if let e = entry(for: name) {
            return StructureDescription(label: label, name: e.name, category: e.category, type: e.type, modifier: e.modifier,
                                        color: e.color, interpretedType: e.interpretedType)
        }
        let trimmed = String(name.trimmingCharacters(in: .whitespaces).prefix(64))
        return StructureDescription(label: label, name: trimmed.isEmpty ? "Label \(label)" : trimmed)
    }

    /// The structures with colours that no two share (nor nearly share: CIE76 ΔE below 12): in label order
    /// each keeps its colour unless an earlier one took it, and then gets the first ``palette`` colour clear of
    /// all taken. Labels in `pinned` (colours a site set in its profile) keep theirs whatever they are.
    public static func distinctColors(_ structures: [StructureDescription], pinned: Set<Int> = []) -> [StructureDescription] {
        var taken: [SIMD3<Double>] = structures.filter { pinned.contains($0.label) }.map { lab($0.color) }
        var result = structures
        for i in result.indices.sorted(by: { result[$0].label < result[$1].label }) where !pinned.contains(result[i].label) {
            let own = lab(result[i].color)
            if taken.allSatisfy({ distance($0, own) >= 12 }) {
                taken.append(own)
                continue
            }
            let choice = palette.first { candidate in taken.allSatisfy { distance($0, lab(candidate)) >= 12 } }
                ?? palette.max { a, b in minimumDistance(lab(a), taken) < minimumDistance(lab(b), taken) }!
            result[i].color = choice
            taken.append(lab(choice))
        }
        return result
    }

    /// 128 colours chosen greedily so that each is as far (CIELAB) from all before it as the 8-level sRGB grid
    /// allows, skipping the very dark and very light (invisible on CT windows and on white paper).
    public static let palette: [SIMD3<UInt8>] = {
        let levels: [UInt8] = [0, 36, 73, 109, 146, 182, 219, 255]
        var candidates: [(SIMD3<UInt8>, SIMD3<Double>)] = []
        for r in levels { for g in levels { for b in levels {
            let c = SIMD3(r, g, b), l = lab(c)
            if l.x >= 35 && l.x <= 88 { candidates.append((c, l)) }
        } } }
        var chosen: [(SIMD3<UInt8>, SIMD3<Double>)] = []
        var nearest = [Double](repeating: .infinity, count: candidates.count)
        // Start from the most saturated red of the grid, then always the candidate farthest from all chosen.
        var next = candidates.firstIndex { $0.0 == SIMD3(219, 36, 36) } ?? 0
        while chosen.count < 128 {
            let pick = candidates[next]
            chosen.append(pick)
            for i in candidates.indices { nearest[i] = min(nearest[i], distance(candidates[i].1, pick.1)) }
            next = nearest.indices.max { nearest[$0] < nearest[$1] }!
        }
        return chosen.map(\.0)
    }()

    static func key(_ name: String) -> String {
        String(name.lowercased().unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) }.map(Character.init))
    }

    static func lab(_ c: SIMD3<UInt8>) -> SIMD3<Double> { CIELab.lab(c) }

    static func distance(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> Double {
        let d = a - b
        return (d * d).sum().squareRoot()
    }

    static func minimumDistance(_ a: SIMD3<Double>, _ set: [SIMD3<Double>]) -> Double { set.map { distance(a, $0) }.min() ?? .infinity }

    // MARK: - The table

    static let table: [String: Entry] = {
        var t: [String: Entry] = [:]
        func add(_ keys: [String], _ name: String, _ code: String, _ meaning: String, _ color: (UInt8, UInt8, UInt8),
                 side: CodedConcept? = nil, category: CodedConcept = .anatomicalStructure, interpreted: String = "ORGAN") {
            let e = Entry(name: name, category: category, type: CodedConcept(code, "SCT", meaning), modifier: side,
                          interpretedType: interpreted, color: SIMD3(color.0, color.1, color.2))
            for k in keys + [name] { t[key(k)] = e }
        }
        /// A left/right pair: `base` is the model's root (kidney → kidney_left, left_kidney, kidney_l …).
        func pair(_ base: String, _ root: String, _ code: String, _ meaning: String, _ leftColor: (UInt8, UInt8, UInt8),
                  _ rightColor: (UInt8, UInt8, UInt8), interpreted: String = "ORGAN", category: CodedConcept = .anatomicalStructure) {
            add(["\(base)_left", "left_\(base)", "\(base)_l"], "\(root)_L", code, meaning, leftColor, side: left, category: category,
                interpreted: interpreted)
            add(["\(base)_right", "right_\(base)", "\(base)_r"], "\(root)_R", code, meaning, rightColor, side: right, category: category,
                interpreted: interpreted)
        }
        // Abdomen and pelvis.
        add(["spleen"], "Spleen", "78961009", "Spleen", (157, 108, 162))
        pair("kidney", "Kidney", "64033007", "Kidney", (185, 102, 83), (212, 126, 96))
        add(["gallbladder", "gall_bladder"], "Gallbladder", "28231008", "Gallbladder", (139, 150, 98))
        add(["liver"], "Liver", "10200004", "Liver", (221, 130, 101))
        add(["stomach"], "Stomach", "69695003", "Stomach", (216, 132, 105))
        add(["pancreas"], "Pancreas", "15776009", "Pancreas", (249, 180, 111))
        pair("adrenal_gland", "Glnd_Adrenal", "23451007", "Adrenal gland", (244, 214, 49), (220, 190, 40))
        add(["small_bowel", "small_intestine", "bowel_small"], "Bowel_Small", "30315005", "Small intestine", (205, 167, 142))
        add(["duodenum"], "Duodenum", "38848004", "Duodenum", (255, 253, 229))
        add(["colon", "large_bowel", "bowel_large"], "Colon", "71854001", "Colon", (204, 168, 143))
        add(["urinary_bladder", "bladder"], "Bladder", "89837001", "Urinary bladder", (222, 154, 132))
        add(["prostate"], "Prostate", "41216001", "Prostate", (230, 158, 140))
        add(["rectum"], "Rectum", "34402009", "Rectum", (188, 150, 120))
        add(["uterus"], "Uterus", "35039007", "Uterus", (219, 160, 170))
        pair("ovary", "Ovary", "15497006", "Ovary", (230, 180, 200), (240, 190, 210))
        pair("testis", "Testis", "40689003", "Testis", (210, 170, 190), (225, 185, 200))
        pair("kidney_cyst", "Kidney_Cyst", "367643001", "Cyst", (120, 200, 255), (100, 170, 240), interpreted: "CAVITY",
             category: alteredStructure)
        // Thorax.
        add(["lung_upper_lobe_left"], "Lung_LUL", "44714003", "Upper lobe of left lung", (172, 138, 115))
        add(["lung_lower_lobe_left"], "Lung_LLL", "41224006", "Lower lobe of left lung", (202, 164, 140))
        add(["lung_upper_lobe_right"], "Lung_RUL", "42400003", "Upper lobe of right lung", (224, 186, 162))
        add(["lung_middle_lobe_right"], "Lung_RML", "72481006", "Middle lobe of right lung", (197, 165, 145))
        add(["lung_lower_lobe_right"], "Lung_RLL", "266005", "Lower lobe of right lung", (194, 142, 0))
        pair("lung", "Lung", "39607008", "Lung", (197, 165, 145), (172, 138, 115))
        add(["lungs"], "Lungs", "39607008", "Lung", (197, 165, 145))
        add(["esophagus", "oesophagus"], "Esophagus", "32849002", "Esophagus", (211, 171, 143))
        add(["trachea"], "Trachea", "44567001", "Trachea", (182, 228, 255))
        add(["thyroid_gland", "thyroid", "glnd_thyroid"], "Glnd_Thyroid", "69748006", "Thyroid", (220, 245, 20))
        add(["heart"], "Heart", "80891009", "Heart", (206, 110, 84))
        add(["thymus"], "Thymus", "9875009", "Thymus", (240, 200, 160))
        pair("breast", "Breast", "76752008", "Breast", (255, 192, 203), (240, 170, 190))
        pair("atrial_appendage", "Atrium_Append", "59652004", "Atrium", (150, 60, 80), (170, 80, 100))
        // Vessels.
        add(["aorta"], "A_Aorta", "15825003", "Aorta", (224, 97, 76))
        add(["inferior_vena_cava", "ivc", "venacava_inferior"], "V_Venacava_I", "64131007", "Inferior vena cava", (0, 151, 206))
        add(["superior_vena_cava", "svc", "venacava_superior"], "V_Venacava_S", "48345005", "Superior vena cava", (0, 122, 171))
        add(["portal_vein_and_splenic_vein", "portal_vein"], "V_Portal", "32764006", "Portal vein", (0, 101, 140))
        add(["pulmonary_vein"], "V_Pulmonary", "29092000", "Vein", (0, 161, 196))
        add(["brachiocephalic_trunk"], "A_Brachiocephls", "12691009", "Brachiocephalic trunk", (196, 121, 79))
        pair("subclavian_artery", "A_Subclavian", "36765005", "Subclavian artery", (183, 72, 61), (216, 82, 60))
        pair("common_carotid_artery", "A_Carotid", "32062004", "Common carotid artery", (155, 40, 45), (180, 50, 55))
        pair("brachiocephalic_vein", "V_Brachioceph", "8887007", "Brachiocephalic vein", (0, 80, 160), (30, 100, 190))
        pair("iliac_artery", "A_Iliac", "73634005", "Common iliac artery", (190, 60, 50), (210, 70, 70))
        pair("iliac_vena", "V_Iliac", "244411005", "Iliac vein", (60, 110, 200), (80, 130, 220))
        // Skeleton.
        add(["sacrum"], "Sacrum", "54735007", "Sacrum", (220, 200, 160))
        add(["skull"], "Skull", "89546000", "Skull", (240, 230, 200))
        add(["sternum"], "Sternum", "56873002", "Sternum", (230, 210, 180))
        add(["costal_cartilages", "costal_cartilage"], "Cartlg_Costal", "85756007", "Tissue", (111, 184, 210))
        add(["mandible", "bone_mandible"], "Bone_Mandible", "91609006", "Mandible", (222, 198, 164))
        pair("humerus", "Humerus", "85050009", "Humerus", (230, 220, 180), (215, 205, 165))
        pair("scapula", "Scapula", "79601000", "Scapula", (225, 205, 170), (210, 190, 155))
        pair("clavicula", "Clavicle", "51299004", "Clavicle", (235, 215, 175), (220, 200, 160))
        add(["clavicle_left"], "Clavicle_L", "51299004", "Clavicle", (235, 215, 175), side: left)
        add(["clavicle_right"], "Clavicle_R", "51299004", "Clavicle", (220, 200, 160), side: right)
        pair("femur", "Femur", "71341001", "Femur", (240, 215, 170), (225, 200, 155))
        pair("hip", "Bone_Hip", "272673000", "Bone", (245, 225, 185), (230, 210, 170))
        let regions: [(String, Int, String, String)] = [("C", 7, "122494005", "Cervical spine"), ("T", 12, "122495006", "Thoracic spine"),
                                                        ("L", 5, "122496007", "Lumbar spine")]
        for (letter, count, code, meaning) in regions {
            for level in 1...count {
                // A gradient along the spine: warm for cervical, neutral thoracic, cool lumbar.
                let step = UInt8(level * 120 / count)
                let color: (UInt8, UInt8, UInt8)
                switch letter {
                case "C": color = (255, 135 + step, 60)
                case "T": color = (200 - step, 220, 120 + step)
                default: color = (120, 120 + step, 255)
                }
                add(["vertebrae_\(letter)\(level)", "vertebra_\(letter)\(level)"], "Vertebra_\(letter)\(level)", code, meaning, color)
            }
        }
        add(["vertebrae_S1", "vertebra_S1"], "Vertebra_S1", "54735007", "Sacrum", (180, 150, 255))
        for n in 1...12 {
            let step = UInt8(n * 10)
            add(["rib_left_\(n)", "left_rib_\(n)"], String(format: "Rib%02d_L", n), "113197003", "Rib", (250 - step, 180, 80 + step), side: left)
            add(["rib_right_\(n)", "right_rib_\(n)"], String(format: "Rib%02d_R", n), "113197003", "Rib", (80 + step, 200 - step, 250), side: right)
        }
        // Muscles (the broader concept with laterality: the name carries which muscle).
        pair("gluteus_maximus", "Musc_GluteMax", "71616004", "Muscle", (160, 70, 60), (175, 85, 75))
        pair("gluteus_medius", "Musc_GluteMed", "71616004", "Muscle", (150, 60, 90), (165, 75, 105))
        pair("gluteus_minimus", "Musc_GluteMin", "71616004", "Muscle", (140, 90, 60), (155, 105, 75))
        pair("autochthon", "Musc_Autochth", "71616004", "Muscle", (120, 60, 40), (135, 75, 55))
        pair("iliopsoas", "Musc_Iliopsoas", "71616004", "Muscle", (170, 100, 100), (185, 115, 115))
        // Head and neck, central nervous system.
        add(["brain"], "Brain", "12738006", "Brain", (250, 250, 225))
        add(["brainstem", "brain_stem"], "Brainstem", "15926001", "Brain stem", (241, 214, 145))
        add(["spinal_cord", "spinalcord"], "SpinalCord", "2748008", "Spinal cord", (244, 214, 49))
        pair("parotid_gland", "Parotid", "45289007", "Parotid gland", (255, 120, 170), (230, 100, 150))
        pair("submandibular_gland", "Glnd_Submand", "54019009", "Submandibular gland", (200, 110, 200), (180, 90, 180))
        pair("eye", "Eye", "81745001", "Eye", (170, 230, 255), (150, 210, 240))
        pair("lens", "Lens", "78076003", "Eye lens", (120, 250, 200), (100, 230, 180))
        pair("optic_nerve", "OpticNrv", "18234004", "Optic nerve", (255, 230, 0), (235, 210, 0))
        add(["larynx"], "Larynx", "4596009", "Larynx", (150, 200, 150))
        // The body outline.
        add(["body", "external", "skin"], "External", "38266002", "Entire body", (0, 200, 0), interpreted: "EXTERNAL")
        return t
    }()
}
