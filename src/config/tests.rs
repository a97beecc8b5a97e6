//! Flags and environment into commands: defaults, precedence, every bad value named.

use super::*;

/// The host name the tests' machine has, for `{hostname}`.
const HOST: &str = "web-7d9f-abcde";

fn parse_with(args: &[&str], vars: &[(&str, &str)]) -> Result<Command, UsageError> {
    parse_on(args, vars, || Some(HOST.to_owned()))
}

fn parse_on(
    args: &[&str],
    vars: &[(&str, &str)],
    host_name: impl Fn() -> Option<String>,
) -> Result<Command, UsageError> {
    let env = |key: &str| {
        vars.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| OsString::from(v))
    };
    parse(args.iter().copied(), env, host_name, 2)
}

fn serve(args: &[&str], vars: &[(&str, &str)]) -> Config {
    match parse_with(args, vars) {
        Ok(Command::Serve(config)) => config,
        other => panic!("expected a config, got {other:?}"),
    }
}

fn error(args: &[&str], vars: &[(&str, &str)]) -> String {
    parse_with(args, vars).unwrap_err().0
}

#[test]
fn defaults() {
    let config = serve(&[], &[]);
    assert_eq!(config.listen, Listen::AnyAddress(8080));
    assert_eq!(config.workers, 2);
    assert_eq!(config.text, "Hello, World!");
    assert_eq!(config.status, 200);
    assert!(!config.access_log);
    assert_eq!(config.grace, Duration::from_secs(10));
    assert_eq!(config.read_timeout, Duration::from_secs(75));
    assert_eq!(config.max_header_bytes, 65536);
    assert_eq!(config.max_connections, None);
}

#[test]
fn limits_from_flags_and_environment() {
    let config = serve(&["--max-header-size", "2048", "--max-connections=10"], &[]);
    assert_eq!(
        (config.max_header_bytes, config.max_connections),
        (2048, Some(10))
    );
    let vars = [
        ("HELLOD_MAX_HEADER_SIZE", "4096"),
        ("HELLOD_MAX_CONNECTIONS", "7"),
    ];
    let config = serve(&[], &vars);
    assert_eq!(
        (config.max_header_bytes, config.max_connections),
        (4096, Some(7))
    );
    assert_eq!(
        error(&["--max-header-size", "100"], &[]),
        "invalid value '100' for --max-header-size: expected a whole number from 1024 to 1048576"
    );
    assert!(error(&[], &[("HELLOD_MAX_CONNECTIONS", "0")]).contains("HELLOD_MAX_CONNECTIONS"));
}

#[test]
fn flag_beats_environment_beats_port() {
    let vars = [("HELLOD_LISTEN", "127.0.0.1:9000"), ("PORT", "7000")];
    assert_eq!(
        serve(&["--listen", "127.0.0.1:9100"], &vars).listen,
        Listen::Exact("127.0.0.1:9100".parse().unwrap())
    );
    assert_eq!(
        serve(&[], &vars).listen,
        Listen::Exact("127.0.0.1:9000".parse().unwrap())
    );
    assert_eq!(
        serve(&[], &[("PORT", "7000")]).listen,
        Listen::AnyAddress(7000)
    );
    assert_eq!(
        serve(&["--workers=3"], &[("HELLOD_WORKERS", "5")]).workers,
        3
    );
    assert_eq!(serve(&[], &[("HELLOD_WORKERS", "5")]).workers, 5);
}

#[test]
fn listen_forms() {
    let listen = |a: &str| serve(&["--listen", a], &[]).listen;
    assert_eq!(listen(":0"), Listen::AnyAddress(0));
    assert_eq!(
        listen("[::1]:80"),
        Listen::Exact("[::1]:80".parse().unwrap())
    );
    assert_eq!(
        listen("localhost:81"),
        Listen::Exact("127.0.0.1:81".parse().unwrap())
    );
    assert!(error(&["--listen", "example.com:80"], &[]).contains("example.com:80"));
}

#[test]
fn loopback_target_of_unspecified_addresses() {
    assert_eq!(
        Listen::AnyAddress(1).loopback_target(),
        "127.0.0.1:1".parse().unwrap()
    );
    assert_eq!(
        Listen::Exact("[::]:3".parse().unwrap()).loopback_target(),
        "127.0.0.1:3".parse().unwrap()
    );
    assert_eq!(
        Listen::Exact("0.0.0.0:2".parse().unwrap()).loopback_target(),
        "127.0.0.1:2".parse().unwrap()
    );
    assert_eq!(
        Listen::Exact("10.1.2.3:4".parse().unwrap()).loopback_target(),
        "10.1.2.3:4".parse().unwrap()
    );
}

#[test]
fn bad_values_name_the_flag_and_value() {
    assert_eq!(
        error(&["--workers", "0"], &[]),
        "invalid value '0' for --workers: expected a whole number from 1 to 1024"
    );
    assert!(
        error(&[], &[("HELLOD_WORKERS", "lots")])
            .starts_with("invalid value 'lots' for HELLOD_WORKERS")
    );
    assert!(error(&[], &[("PORT", "99999")]).starts_with("invalid value '99999' for PORT"));
    assert!(error(&["--listen", "nowhere"], &[]).contains("'nowhere' for --listen"));
    assert!(error(&["--status", "99"], &[]).contains("'99' for --status"));
    assert!(error(&["--status", "204"], &[]).contains("'204' for --status"));
    assert!(error(&["--grace", "-1"], &[]).contains("'-1' for --grace"));
    assert_eq!(
        error(&["--read-timeout", "0"], &[]),
        "invalid value '0' for --read-timeout: expected seconds from 0.1 to 86400, such as 10 or 0.5"
    );
    for bad in ["1e3", ".5", "1.2345", "86400.001", "NaN", "1,5"] {
        assert!(error(&["--grace", bad], &[]).contains(bad), "{bad}");
    }
    assert!(error(&[], &[("HELLOD_ACCESS_LOG", "maybe")]).contains("HELLOD_ACCESS_LOG"));
    assert!(error(&["--bogus"], &[]).contains("--bogus"));
    assert!(error(&["--workers"], &[]).contains("--workers"));
}

#[test]
fn status_without_body_is_accepted_where_tiny_http_sends_it_right() {
    assert_eq!(serve(&["--status", "304"], &[]).status, 304);
    assert_eq!(serve(&[], &[("HELLOD_STATUS", "503")]).status, 503);
}

#[test]
fn access_log_switches() {
    assert!(serve(&["--access-log"], &[]).access_log);
    assert!(serve(&[], &[("HELLOD_ACCESS_LOG", "true")]).access_log);
    assert!(!serve(&[], &[("HELLOD_ACCESS_LOG", "0")]).access_log);
}

#[test]
fn fractional_seconds() {
    let grace = |s: &str| serve(&["--grace", s], &[]).grace;
    assert_eq!(grace("0.5"), Duration::from_millis(500));
    assert_eq!(grace("2.25"), Duration::from_millis(2250));
    assert_eq!(grace("0"), Duration::ZERO);
    assert_eq!(grace("86400"), Duration::from_secs(86400));
    assert_eq!(
        serve(&["--read-timeout", "0.1"], &[]).read_timeout,
        Duration::from_millis(100)
    );
}

#[test]
fn headers_from_flags_or_environment() {
    assert_eq!(serve(&[], &[]).headers, []);
    let headers = serve(
        &[
            "--header",
            "X-Replica:pod-1",
            "--header=Cache-Control:  no-store \t",
        ],
        &[("HELLOD_HEADERS", "X-Ignored: yes")],
    )
    .headers;
    assert_eq!(
        headers,
        [
            ("X-Replica".into(), "pod-1".into()),
            ("Cache-Control".into(), "no-store".into())
        ]
    );
    // A Kubernetes `value: |` block: one header a line, a newline at the end; CRLF too.
    let headers = serve(
        &[],
        &[(
            "HELLOD_HEADERS",
            "X-Pod: web-1\r\n\nX-Tab: a\tb\nX-Empty:\n",
        )],
    )
    .headers;
    assert_eq!(
        headers,
        [
            ("X-Pod".into(), "web-1".into()),
            ("X-Tab".into(), "a\tb".into()),
            ("X-Empty".into(), "".into())
        ]
    );
    // Names may repeat, except the two that replace hellod's own.
    assert_eq!(
        serve(&["--header", "Vary: a", "--header", "vary: b"], &[])
            .headers
            .len(),
        2
    );
}

#[test]
fn bad_headers_name_the_header_and_why() {
    assert_eq!(
        error(&["--header", "Content-Length: 5"], &[]),
        "invalid value 'Content-Length: 5' for --header: Content-Length cannot be set: \
         it would break the response's framing, which tiny_http sets"
    );
    for name in [
        "Content-Length",
        "transfer-encoding",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "te",
        "Trailer",
        "UPGRADE",
        "Date",
    ] {
        assert!(
            error(&["--header", &format!("{name}: x")], &[]).contains("cannot be set"),
            "{name}"
        );
    }
    for (header, why) in [
        ("X A: b", "is not a header name"),
        (": b", "is not a header name"),
        ("X-(A): b", "is not a header name"),
        ("Ä: b", "is not a header name"),
        ("No colon", "expected 'Name: value'"),
        ("", "expected 'Name: value'"),
        ("X-A: a\r\nSet-Cookie: x", "control character (\\x0d)"),
        ("X-A: a\nb", "control character (\\x0a)"),
        ("X-A: a\0b", "control character (\\x00)"),
        ("X-A: \x1b[31m", "control character (\\x1b)"),
        ("X-A: a\x7f", "control character (\\x7f)"),
        ("X-A: café", "not ASCII"),
    ] {
        let message = error(&["--header", header], &[]);
        assert!(message.contains(why), "{header:?}: {message}");
        assert!(!message.contains(['\r', '\n', '\0']), "{message:?}");
    }
    assert!(
        error(&["--header", "server: a", "--header", "Server: b"], &[])
            .contains("Server is given twice")
    );
    assert_eq!(
        error(
            &[],
            &[(
                "HELLOD_HEADERS",
                "X-Ok: 1\nContent-Type: a\ncontent-type: b"
            )]
        ),
        "invalid value 'content-type: b' for HELLOD_HEADERS: Content-Type is given twice; \
         it replaces hellod's own"
    );
}

#[test]
fn subcommand_and_info() {
    assert_eq!(
        parse_with(&["healthcheck", "--url", "http://x/"], &[("PORT", "81")]),
        Ok(Command::Healthcheck {
            url: Some("http://x/".into()),
            listen: Listen::AnyAddress(81)
        })
    );
    assert_eq!(parse_with(&["--help"], &[]), Ok(Command::Help));
    assert_eq!(parse_with(&["-V"], &[]), Ok(Command::Version));
    assert!(error(&["--url", "http://x/"], &[]).contains("--url"));
    assert!(error(&["serve"], &[]).contains("serve"));
}

#[test]
fn help_formats_the_limits_from_the_constants_that_set_them() {
    assert_eq!(size(48 * 1024), "48 KiB");
    assert_eq!(size(8 << 20), "8 MiB");
    assert_eq!(size(1000), "1000 bytes");
    assert_eq!(seconds(Duration::from_secs(2)), "2 s");
    assert_eq!(seconds(Duration::from_millis(250)), "0.25 s");
    assert_eq!(seconds(Duration::from_millis(1005)), "1.005 s");

    let help = help_text(3, 89, 4567);
    for shown in [
        format!("{} a waiting connection", size(process::WAITING_MEMORY)),
        format!(
            "after\n{:40}{}, 1/{} for",
            "",
            size(process::BASE_MEMORY),
            process::HEAD_RESERVE_SHARE
        ),
        format!("at {} each", size(process::SERVED_MEMORY)),
        format!("1/{} of", process::SERVING_SHARE),
        format!("at most\n{:40}{}", "", process::DEFAULT_MAX_SERVING),
        "here 89]".to_owned(),
        format!("at most 1/{}\n  of the memory limit", process::HEAD_SHARE),
        format!("{} without one", size(process::DEFAULT_HEAD_BUDGET)),
        format!("{} timeout", seconds(healthcheck::TIMEOUT)),
        format!("at most {MAX_HEADER_FIELDS} header fields"),
        format!("bodies up to {MAX_BODY_BYTES} bytes"),
        format!("1 to {MAX_WORKERS}"),
        "here 3]".to_owned(),
        "{hostname} in it becomes the machine's host name".to_owned(),
        "{{hostname}} a literal {hostname}".to_owned(),
        "here 4567]".to_owned(),
    ] {
        assert!(help.contains(&shown), "{shown:?} in:\n{help}");
    }
}

#[test]
fn hostname_in_the_text_and_header_values_is_the_machines() {
    let config = serve(
        &[
            "--text",
            "Hello from {hostname}! ({hostname})",
            "--header",
            "X-Served-By: {hostname}",
            "--header",
            "X-Both: {hostname}.{hostname}",
        ],
        &[],
    );
    assert_eq!(config.text, format!("Hello from {HOST}! ({HOST})"));
    assert_eq!(
        config.headers,
        [
            ("X-Served-By".into(), HOST.into()),
            ("X-Both".into(), format!("{HOST}.{HOST}"))
        ]
    );
    let vars = [
        ("HELLOD_TEXT", "{hostname}"),
        ("HELLOD_HEADERS", "X-Replica: {hostname}\nX-Zone: eu-1\n"),
    ];
    let config = serve(&[], &vars);
    assert_eq!(config.text, HOST);
    assert_eq!(
        config.headers,
        [
            ("X-Replica".into(), HOST.into()),
            ("X-Zone".into(), "eu-1".into())
        ]
    );
}

#[test]
fn doubled_braces_give_a_literal_hostname_and_other_braces_stay() {
    let never = || -> Option<String> { panic!("the host name was read") };
    let config = match parse_on(
        &[
            "--text",
            "{{hostname}} {host} {} {{ }} {hostname",
            "--header",
            "X-Template: {{hostname}}",
        ],
        &[],
        never,
    ) {
        Ok(Command::Serve(config)) => config,
        other => panic!("{other:?}"),
    };
    assert_eq!(config.text, "{hostname} {host} {} {{ }} {hostname");
    assert_eq!(config.headers[0].1, "{hostname}");
    assert_eq!(
        serve(&["--text", "{{{hostname}}}"], &[]).text,
        "{{hostname}}"
    );
    assert_eq!(
        serve(&["--text", "{{{hostname}"], &[]).text,
        format!("{{{{{HOST}")
    );
    // Not read when nothing asks for it, so an unreadable one matters only then.
    assert!(parse_on(&["--header", "X-A: b"], &[], never).is_ok());
    // Only values: a header name stays a token.
    assert!(error(&["--header", "X-{hostname}: a"], &[]).contains("is not a header name"));
}

#[test]
fn a_host_name_that_is_no_header_value_is_refused_in_one_line() {
    let on = |host: Option<&str>, args: &[&str]| {
        let host = host.map(str::to_owned);
        parse_on(args, &[], move || host.clone()).unwrap_err().0
    };
    assert_eq!(
        on(Some("caf\u{e9}"), &["--text", "at {hostname}"]),
        "invalid value 'at {hostname}' for --text: {hostname} cannot be replaced: \
         the host name 'caf\u{e9}' is not printable ASCII"
    );
    let message = on(
        Some("a\r\nSet-Cookie: x"),
        &["--header", "X-Host: {hostname}"],
    );
    assert_eq!(
        message,
        "invalid value 'X-Host: {hostname}' for --header: {hostname} cannot be replaced: \
         the host name 'a\\x0d\\x0aSet-Cookie: x' is not printable ASCII"
    );
    assert!(on(Some(""), &["--text", "{hostname}"]).contains("the host name '' is not"));
    assert!(on(Some("a b"), &["--text", "{hostname}"]).contains("not printable ASCII"));
    assert!(on(None, &["--text", "{hostname}"]).ends_with("the host name cannot be read"));
}
