//! Property tests of unit identity: the hash ignores formatting, key order,
//! comments and the spelling of equal values, and changes with any change of
//! meaning, in the class of keys the design's reload rules give it.

use std::path::Path;

use proptest::prelude::*;
use supervisor::units::diag::Source;
use supervisor::units::parse::{ParseInput, parse_unit};
use supervisor::units::{Change, Hashes};

/// A key is absent in the file.
const ABSENT: &str = "";

/// (section, key, classes): every spelling within a class means the same;
/// different classes mean different things. `ABSENT` in a class says that
/// leaving the key out means the same as its spellings (its default).
const FIELDS: &[(&str, &str, &[&[&str]])] = &[
    ("unit", "description", &[&[ABSENT], &[r#""web""#, "'web'", r#""""web""""#]]),
    ("unit", "after", &[&[ABSENT, "[]"], &[r#"["x", "y"]"#, r#"["y", "x"]"#, r#"["x", "y", "x"]"#], &[r#"["x"]"#]]),
    ("unit", "ready_timeout", &[&[ABSENT, r#""5m""#, r#""300s""#], &[r#""1h30m""#, r#""90m""#, r#""1h 30m""#]]),
    (
        "container",
        "image",
        &[
            &[r#""nginx""#, r#""docker.io/library/nginx:latest""#, r#""index.docker.io/library/nginx""#],
            &[r#""redis:7""#, r#""docker.io/library/redis:7""#],
        ],
    ),
    ("container", "pull", &[&[ABSENT, r#""missing""#], &[r#""always""#]]),
    ("container", "command", &[&[ABSENT], &[r#"["sleep", "1"]"#, r#"[ "sleep", "1", ]"#], &[r#"["sleep", "2"]"#]]),
    (
        "container",
        "env",
        &[
            &[ABSENT, "{}"],
            &[r#"{ A = "1", B = "2" }"#, r#"{ B = "2", A = "1" }"#, r#"{ A = 1, B = "2" }"#],
            &[r#"{ A = "2" }"#],
        ],
    ),
    ("container", "ports", &[&[ABSENT, "[]"], &[r#"["8080:80"]"#, r#"["8080:80/tcp"]"#], &[r#"["8081:80"]"#]]),
    (
        "container",
        "volumes",
        &[&[ABSENT], &[r#"["/srv/www/:/html:ro"]"#, r#"["/srv//www:/html/:ro"]"#], &[r#"["/srv/www:/html"]"#]],
    ),
    (
        "container",
        "tmpfs",
        &[&[ABSENT], &[r#"["/tmp:size=64M,mode=1777"]"#, r#"["/tmp:mode=1777,size=65536k"]"#], &[r#"["/tmp"]"#]],
    ),
    ("container", "cap_add", &[&[ABSENT, "[]"], &[r#"["NET_ADMIN"]"#, r#"["cap_net_admin"]"#], &[r#"["SYS_TIME"]"#]]),
    ("container", "no_new_privileges", &[&[ABSENT, "true"], &["false"]]),
    ("container", "hostname", &[&[ABSENT, r#""u""#], &[r#""web""#]]),
    (
        "resources",
        "memory",
        &[&[ABSENT], &[r#""1G""#, r#""1024M""#, r#""1g""#, "1073741824", r#""1GiB""#], &[r#""512M""#]],
    ),
    ("resources", "cpus", &[&[ABSENT], &["0.5", "0.50", "5e-1"], &["1", "1.0"]]),
    ("resources", "pids", &[&[ABSENT], &["100", "0x64", "1_00"], &["101"]]),
    ("restart", "policy", &[&[ABSENT, r#""always""#], &[r#""on-failure""#]]),
    ("restart", "delay", &[&[ABSENT, r#""100ms""#], &[r#""1s""#, r#""1000ms""#]]),
    ("restart", "limit", &[&[ABSENT, "0"], &["5"]]),
    ("stop", "signal", &[&[ABSENT], &[r#""SIGTERM""#, r#""TERM""#, "15", r#""sigterm""#], &[r#""SIGINT""#, "2"]]),
    ("stop", "timeout", &[&[ABSENT, r#""10s""#, r#""10000ms""#], &[r#""1m""#, r#""60s""#]]),
    ("health", "tcp", &[&[ABSENT], &["80"], &["81"]]),
    ("logs", "max_size", &[&[ABSENT, r#""10M""#, "10485760", r#""10240k""#], &[r#""1M""#]]),
    ("logs", "max_files", &[&[ABSENT, "3"], &["5"]]),
    ("update", "strategy", &[&[ABSENT, r#""stop-first""#], &[r#""start-first""#]]),
    ("update", "healthy_within", &[&[ABSENT, r#""60s""#, r#""1m""#], &[r#""90s""#, r#""1m30s""#]]),
    ("update", "min_healthy", &[&[ABSENT, r#""5s""#, r#""5000ms""#], &[r#""0s""#]]),
    ("update", "rollback", &[&[ABSENT, "true"], &["false"]]),
    ("update", "auto", &[&[ABSENT, r#""never""#], &[r#""registry""#]]),
];

/// A tiny deterministic generator, so that one proptest seed drives every
/// choice and a failure reproduces from it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Renders a unit with the chosen class of each field, random spellings
/// within the class, random section and key order, comments and spacing.
fn render(classes: &[usize], rng: &mut Rng) -> String {
    let mut sections: Vec<&str> = Vec::new();
    for (s, _, _) in FIELDS {
        if !sections.contains(s) {
            sections.push(s);
        }
    }
    rng.shuffle(&mut sections);
    let mut out = String::new();
    for section in sections {
        let mut lines: Vec<String> = Vec::new();
        for (i, (s, key, cls)) in FIELDS.iter().enumerate() {
            if *s != section {
                continue;
            }
            let spellings = cls[classes[i]];
            let value = spellings[rng.below(spellings.len())];
            if value == ABSENT {
                continue;
            }
            let pad = |rng: &mut Rng| " ".repeat(rng.below(3));
            lines.push(format!("{key}{}={}{value}", pad(rng), pad(rng)));
        }
        rng.shuffle(&mut lines);
        if lines.is_empty() && rng.below(2) == 0 {
            continue;
        }
        out += &format!("{}[{section}]{}\n", "\n".repeat(rng.below(2)), [" # c", ""][rng.below(2)]);
        for line in lines {
            if rng.below(3) == 0 {
                out += "# a comment\n";
            }
            out += &line;
            out += ["\n", "  # trailing\n", "\n\n"][rng.below(3)];
        }
    }
    out
}

fn hashes(text: &str) -> Hashes {
    let input = ParseInput {
        name: "u",
        source: Source { path: Path::new("u.toml"), text },
        base_dir: Path::new("/etc/units.d"),
        read_file: &|_| Err("no files here".into()),
    };
    match parse_unit(&input) {
        Ok(p) => Hashes::of(&p.unit),
        Err(e) => panic!("{text}\n{e:#?}"),
    }
}

/// The reload class of a section, as the design defines it.
fn class_of(section: &str) -> Change {
    match section {
        "container" => Change::Restart,
        "resources" => Change::Live,
        _ => Change::Config,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn equal_meaning_equal_hash(picks in prop::collection::vec(any::<prop::sample::Index>(), FIELDS.len()), seed in 1u64..) {
        let classes: Vec<usize> = FIELDS.iter().zip(&picks).map(|((_, _, c), p)| p.index(c.len())).collect();
        let mut rng = Rng(seed);
        let a = render(&classes, &mut rng);
        let b = render(&classes, &mut rng);
        prop_assert_eq!(hashes(&a), hashes(&b), "\n--- a ---\n{}\n--- b ---\n{}", a, b);
    }

    #[test]
    fn any_change_of_meaning_changes_the_hash_in_its_class(
        picks in prop::collection::vec(any::<prop::sample::Index>(), FIELDS.len()),
        field in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        seed in 1u64..,
    ) {
        let classes: Vec<usize> = FIELDS.iter().zip(&picks).map(|((_, _, c), p)| p.index(c.len())).collect();
        let f = field.index(FIELDS.len());
        let (section, key, cls) = FIELDS[f];
        let mut changed = classes.clone();
        // Any other class of that field.
        changed[f] = (classes[f] + 1 + other.index(cls.len() - 1)) % cls.len();
        let mut rng = Rng(seed);
        let before = hashes(&render(&classes, &mut rng));
        let after = hashes(&render(&changed, &mut rng));
        prop_assert_ne!(&before.unit, &after.unit, "changing {}.{} kept the hash", section, key);
        prop_assert_eq!(before.change_to(&after), class_of(section), "{}.{}", section, key);
    }
}

/// Changing how the next update is rolled out replaces nothing now.
#[test]
fn the_update_section_is_config_class() {
    let base = "[container]\nimage = \"nginx:1.27\"\n";
    let before = hashes(base);
    let after = hashes(&format!(
        "{base}[update]\nhealthy_within = \"2m\"\nmin_healthy = \"30s\"\nrollback = false\nauto = \"registry\"\n"
    ));
    assert_ne!(before.config, after.config);
    assert_eq!((&before.restart, &before.live), (&after.restart, &after.live));
    assert_eq!(before.change_to(&after), Change::Config);
}

#[test]
fn env_file_contents_are_part_of_the_restart_class() {
    let text = "[container]\nimage = \"busybox\"\nenv_file = \"web.env\"\n";
    let with = |contents: &'static str| {
        let read = move |_: &Path| Ok(contents.to_string());
        let input = ParseInput {
            name: "web",
            source: Source { path: Path::new("web.toml"), text },
            base_dir: Path::new("/etc/units.d"),
            read_file: &read,
        };
        Hashes::of(&parse_unit(&input).unwrap().unit)
    };
    let a = with("A=1\n");
    assert_eq!(a, with("# same\nA=1\n"));
    assert_eq!(a.change_to(&with("A=2\n")), Change::Restart);
}
