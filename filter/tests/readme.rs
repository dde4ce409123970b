//! Every JSON configuration the README shows in its configuration
//! reference is one the filter accepts: a copy-paste example that Envoy
//! would refuse to load is a bug.

use header_filter::Config;

#[test]
fn every_configuration_in_the_readme_reference_is_accepted() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    let start = readme
        .find("## Configuration reference")
        .expect("a configuration reference");
    let end = readme[start + 1..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 1 + i);
    let section = &readme[start..end];
    let mut checked = 0;
    let mut rest = section;
    while let Some(open) = rest.find("```json\n") {
        let body = &rest[open + 8..];
        let close = body.find("```").expect("a closed block");
        let json = &body[..close];
        // Blocks that are fragments (a field, not a whole configuration)
        // start with something other than an object.
        if json.trim_start().starts_with('{') {
            if let Err(error) = Config::parse(json.as_bytes()) {
                panic!("README configuration refused: {error}\n{json}");
            }
            checked += 1;
        }
        rest = &body[close + 3..];
    }
    assert!(
        checked >= 7,
        "only {checked} configurations found in the README"
    );
}
