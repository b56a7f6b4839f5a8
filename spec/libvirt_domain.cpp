// read_domain_xml(): the devices of a libvirt domain XML and the places libvirt gave them.
#include "spec/libvirt_domain.hpp"

#include <fmt/format.h>

#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <cctype>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace qshim::spec::detail {

namespace {

namespace pt = boost::property_tree;

const char* const context = "reading the libvirt domain XML";

std::string attribute(const pt::ptree& element, const char* name) {
    return element.get<std::string>(std::string("<xmlattr>.") + name, "");
}

// libvirt writes numbers as hex with 0x (addresses) or decimal (indexes, units).
std::optional<unsigned> number(const std::string& text, unsigned max) {
    std::string_view s = text;
    int base = 10;
    if (s.starts_with("0x") || s.starts_with("0X")) {
        s.remove_prefix(2);
        base = 16;
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || value > max)
        return std::nullopt;
    return value;
}

class Reader {
  public:
    explicit Reader(std::string file) : file_(std::move(file)) {}

    Result<Domain> read(std::istream& in) {
        pt::ptree tree;
        try {
            pt::read_xml(in, tree, pt::xml_parser::no_comments);
        } catch (const pt::xml_parser_error& e) {
            return make_error(
                Errc::invalid_spec,
                fmt::format("{}:{}: not well-formed XML: {}", file_, e.line(), e.message()),
                context);
        }
        const auto domain = tree.get_child_optional("domain");
        if (!domain)
            return make_error(Errc::invalid_spec,
                              file_ + ": not a libvirt domain (no <domain> element at its top)",
                              context);
        Domain out;
        out.file = file_;
        out.machine = domain->get<std::string>("os.type.<xmlattr>.machine", "");
        if (auto devices = domain->get_child_optional("devices"))
            for (const auto& [name, element] : *devices) {
                if (name == "<xmlattr>") continue;
                out.devices.push_back(device(name, element));
            }
        if (!problems_.empty()) {
            Error e = make_error(Errc::invalid_spec,
                                 fmt::format("{}: {} malformed address{}", file_, problems_.size(),
                                             problems_.size() == 1 ? "" : "es"),
                                 context);
            e.diagnostics = std::move(problems_);
            return e;
        }
        return out;
    }

  private:
    DomainDevice device(const std::string& name, const pt::ptree& element) {
        DomainDevice d;
        d.element = name;
        d.alias = element.get<std::string>("alias.<xmlattr>.name", "");
        if (name == "controller") {
            d.type = attribute(element, "type");
            d.model = attribute(element, "model");
            d.index = number(attribute(element, "index"), 255);
            d.chassis =
                number(element.get<std::string>("target.<xmlattr>.chassis", "0"), 255).value_or(0);
            d.port =
                number(element.get<std::string>("target.<xmlattr>.port", "0"), 255).value_or(0);
        } else if (name == "disk") {
            d.type = attribute(element, "device");
            d.bus = element.get<std::string>("target.<xmlattr>.bus", "");
        } else if (name == "interface") {
            d.model = element.get<std::string>("model.<xmlattr>.type", "");
            d.mac = element.get<std::string>("mac.<xmlattr>.address", "");
            for (char& c : d.mac)
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        } else {
            d.model = attribute(element, "model");
        }
        if (auto a = element.get_child_optional("address")) address(d, *a);
        return d;
    }

    void address(DomainDevice& d, const pt::ptree& a) {
        const std::string type = attribute(a, "type");
        auto field = [&](const char* key, unsigned max) {
            auto v = number(attribute(a, key), max);
            if (!v)
                problems_.push_back(
                    {file_, 0, 0, d.label() + " <address " + key + ">",
                     fmt::format("'{}' is not a number up to {:#x}", attribute(a, key), max)});
            return v.value_or(0);
        };
        if (type == "pci") {
            d.pci = PciAddress{uint16_t(field("domain", 0xffff)), uint8_t(field("bus", 0xff)),
                               uint8_t(field("slot", 0x1f)), uint8_t(field("function", 7))};
        } else if (type == "drive") {
            d.drive = DomainDevice::Drive{field("controller", 0xffff), field("bus", 0xffff),
                                          field("target", 0xffff), field("unit", 0xffff)};
        }
    }

    std::string file_;
    std::vector<Diagnostic> problems_;
};

}  // namespace

std::string DomainDevice::label() const {
    std::string s = element;
    if (!type.empty() && element == "controller") s += " " + type;
    if (index) s += fmt::format(" {}", *index);
    if (!alias.empty()) s += " " + alias;
    if (!mac.empty() && alias.empty()) s += " " + mac;
    return s;
}

const DomainDevice* Domain::controller(const std::string& type, unsigned index) const {
    for (const auto& d : devices)
        if (d.element == "controller" && d.type == type && d.index == index) return &d;
    return nullptr;
}

Result<Domain> read_domain_xml(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return make_error(Errc::io, fmt::format("cannot read {}: {}", path, std::strerror(errno)),
                          context);
    // A domain XML is a few KiB; anything huge is not one.
    std::stringstream text;
    text << in.rdbuf();
    if (text.str().size() > max_spec_bytes)
        return make_error(
            Errc::invalid_spec,
            fmt::format("{} is larger than {} bytes: not a domain XML", path, max_spec_bytes),
            context);
    return Reader(path).read(text);
}

}  // namespace qshim::spec::detail
