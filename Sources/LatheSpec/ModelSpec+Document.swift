import Yams

extension ModelSpec {
    /// The spec written back in `lathe.yaml`'s shape, as a YAML node tree: what
    /// ``SpecParser/check(_:fileName:)`` parses again so that a spec that arrived as JSON (a
    /// pushed config) passes through every check `lathe validate` makes.
    public var document: Node {
        var root: [(Node, Node)] = []
        func add(_ key: String, _ value: Node?) { if let value { root.append((Self.key(key), value)) } }
        add("name", name.map(Self.text))
        add("description", description.map(Self.text))
        add("license", license.map(Self.text))
        add("python", Self.text(python.description))
        if !pythonPackages.isEmpty { add("python_packages", Node(pythonPackages.map(Self.text))) }
        add("requirements", requirements.map(Self.text))
        if !systemPackages.isEmpty { add("system_packages", Node(systemPackages.map(Self.text))) }
        add("predict", Self.text(predict.description))
        add("safety_checker", safetyChecker.map { Self.text($0.description) })
        add("train", train.map { train in
            Node([(Self.key("entry"), Self.text(train.entry.description)),
                  (Self.key("inputs"), Node(train.inputs.map { (Self.key($0.name), $0.document) }))])
        })
        add("inputs", Node(inputs.map { (Self.key($0.name), $0.document) }))
        add("output", output.document)
        if !weights.isEmpty {
            add("weights", Node(weights.map { entry in
                Node([(Self.key("path"), Self.text(entry.path))] + (entry.sha256.map { [(Self.key("sha256"), Self.text($0))] } ?? []))
            }))
        }
        add("concurrency", Self.plain(String(concurrency)))
        add("timeout", Self.plain(String(timeout)))
        add("network", Self.plain(network ? "true" : "false"))
        return Node(root)
    }

    static func key(_ text: String) -> Node { Node(text, Tag(.str), .plain) }
    /// Quoted, so the parser reads it as text whatever it holds.
    static func text(_ value: String) -> Node { Node(value, Tag(.str), .doubleQuoted) }
    static func plain(_ value: String) -> Node { Node(value, .implicit, .plain) }

    static func node(_ value: JSONValue) -> Node {
        switch value {
        case .null: plain("null")
        case .bool(let bool): plain(bool ? "true" : "false")
        case .int(let int): plain(String(int))
        case .number(let double): plain(String(double))
        case .string(let string): text(string)
        case .array(let values): Node(values.map(node))
        case .object(let object): Node(object.keys.sorted().map { (text($0), node(object[$0]!)) })
        }
    }
}

extension InputSpec {
    var document: Node {
        var fields: [(Node, Node)] = [(ModelSpec.key("type"), ModelSpec.text(type.rawValue))]
        func add(_ key: String, _ value: Node?) { if let value { fields.append((ModelSpec.key(key), value)) } }
        add("items", items.map { ModelSpec.text($0.rawValue) })
        add("description", description.map(ModelSpec.text))
        add("default", `default`.map(ModelSpec.node))
        add("minimum", minimum.map { ModelSpec.node(.number($0)) })
        add("maximum", maximum.map { ModelSpec.node(.number($0)) })
        add("min_length", minLength.map { ModelSpec.plain(String($0)) })
        add("max_length", maxLength.map { ModelSpec.plain(String($0)) })
        add("pattern", pattern.map(ModelSpec.text))
        add("choices", choices.map { Node($0.map(ModelSpec.node)) })
        add("accept", accept.map(ModelSpec.text))
        add("deprecated", deprecated.map { ModelSpec.plain($0 ? "true" : "false") })
        add("nullable", nullable.map { ModelSpec.plain($0 ? "true" : "false") })
        return Node(fields)
    }
}

extension OutputSpec {
    var document: Node {
        var fields: [(Node, Node)] = [(ModelSpec.key("type"), ModelSpec.text(type.rawValue))]
        func add(_ key: String, _ value: Node?) { if let value { fields.append((ModelSpec.key(key), value)) } }
        add("description", description.map(ModelSpec.text))
        add("nullable", nullable.map { ModelSpec.plain($0 ? "true" : "false") })
        add("items", items.map(\.document))
        add("properties", properties.map { properties in
            Node(properties.keys.sorted().map { (ModelSpec.key($0), properties[$0]!.document) })
        })
        add("concatenate", concatenate.map { ModelSpec.plain($0 ? "true" : "false") })
        return Node(fields)
    }
}
