//! Realistic Jodo and Toolzz deliveries, deterministic from a seed.
//!
//! One stream of events over a pool of students (Jodo) and learners (Toolzz):
//! every Jodo kind (student registered, dropped, activated; payment added,
//! updated, cancelled) and every Toolzz kind (members.created/updated, course
//! enrollment/completed, certificate.issued) plus an unknown slug. Bodies are
//! 0.5-1.5 KB; a few percent carry a provider time earlier than events already
//! produced (late deliveries). Toolzz bodies are unique (their dedupe key is
//! the body's hash), so every produced event is a distinct delivery; exact
//! duplicates are added by [`with_duplicates`].

use std::collections::HashSet;
use std::fmt::Write;

use registrar::event::Source;
use registrar::sources::toolzz;

/// SplitMix64: small, fast, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// One delivery as a provider sends it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub source: Source,
    pub body: Vec<u8>,
    /// What registrar will use as the dedupe key (Jodo `event_id`, Toolzz
    /// `blake3:<hex>`).
    pub key: String,
}

/// Sizes of the pools the events are about.
#[derive(Debug, Clone, Copy)]
pub struct GenConfig {
    pub seed: u64,
    pub students: usize,
    pub learners: usize,
    /// Share of events whose provider time is earlier than the clock.
    pub late: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unregistered,
    Active,
    Dropped,
}

#[derive(Debug, Clone)]
struct StudentState {
    status: Status,
    /// Payment numbers not cancelled yet.
    payments: Vec<u32>,
}

/// Produces the stream; see the module doc.
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    /// Provider clock, unix seconds; advances 1-4 s per event.
    clock: i64,
    students: Vec<StudentState>,
    next_payment: u32,
    next_enrollment: u64,
    /// Toolzz enrollments made so far: (enrollment id, user, course).
    enrollments: Vec<(u64, u64, u64)>,
    /// Prefixes of Toolzz dedupe keys produced, to keep bodies distinct.
    toolzz_seen: HashSet<u128>,
}

/// 2024-01-01T00:00:00Z.
const EPOCH: i64 = 1_704_067_200;
/// America/Sao_Paulo has been UTC-3 all year since 2019.
const SAO_PAULO_OFFSET: i64 = -3 * 3600;
const COURSES: u64 = 60;

const FIRST: &[&str] = &[
    "Aarav", "Vivaan", "Aditya", "Ananya", "Diya", "Isha", "Kabir", "Meera", "Rohan", "Saanvi",
    "Arjun", "Priya", "Lucas", "Gabriel", "Maria", "Julia", "Pedro", "Beatriz", "Rafael", "Laura",
];
const LAST: &[&str] = &[
    "Sharma", "Verma", "Iyer", "Nair", "Reddy", "Gupta", "Menon", "Patel", "Silva", "Santos",
    "Oliveira", "Souza", "Costa", "Pereira", "Almeida", "Ferreira",
];
const GRADES: &[(&str, &str)] = &[
    ("M1BLUE", "Montessori 1"),
    ("M2RED", "Montessori 2"),
    ("G1A", "Grade 1 - Section A"),
    ("G2B", "Grade 2 - Section B"),
    ("G5C", "Grade 5 - Section C"),
    ("G8A", "Grade 8 - Section A"),
    ("G10B", "Grade 10 - Section B"),
];
const NOTE_KEYS: &[&str] = &[
    "registration_number",
    "father_name",
    "mother_name",
    "residential_address",
    "blood_group",
    "transport_route",
    "house",
    "previous_school",
    "admission_date",
    "emergency_contact",
    "sibling_admission_number",
    "medical_conditions",
    "scholarship",
    "pickup_authorised",
];
const FEE_COMPONENTS: &[&str] = &[
    "TUITION_FEE",
    "TRANSPORT_FEE",
    "LIBRARY_FEE",
    "LAB_FEE",
    "EXAM_FEE",
    "SPORTS_FEE",
];
const MODES: &[&str] = &["cash", "upi", "cheque", "neft", "card", "others"];

impl Generator {
    pub fn new(cfg: GenConfig) -> Generator {
        Generator {
            cfg,
            rng: Rng::new(cfg.seed),
            clock: EPOCH,
            students: vec![
                StudentState {
                    status: Status::Unregistered,
                    payments: Vec::new(),
                };
                cfg.students
            ],
            next_payment: 0,
            next_enrollment: 1,
            enrollments: Vec::new(),
            toolzz_seen: HashSet::new(),
        }
    }

    /// The `jodo_student_id` of student `i`.
    pub fn student_id(i: usize) -> String {
        format!("student_{}", 100_000 + i)
    }

    /// The ids of the students registered so far (they have a history).
    pub fn registered_students(&self) -> Vec<String> {
        self.students
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status != Status::Unregistered)
            .map(|(i, _)| Generator::student_id(i))
            .collect()
    }

    /// The next delivery.
    pub fn next_delivery(&mut self) -> Delivery {
        self.clock += 1 + self.rng.below(4) as i64;
        let at = if self.rng.unit() < self.cfg.late {
            // A late delivery: minutes to three days behind.
            self.clock - 60 - self.rng.below(3 * 86_400) as i64
        } else {
            self.clock
        };
        if self.rng.unit() < 0.6 {
            self.jodo(at)
        } else {
            self.toolzz(at)
        }
    }

    fn uuid(&mut self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn jodo(&mut self, at: i64) -> Delivery {
        let s = self.rng.below(self.students.len() as u64) as usize;
        let event_id = self.uuid();
        let state = &self.students[s];
        let r = self.rng.unit();
        let has_payments = !state.payments.is_empty();
        let body = if state.status == Status::Unregistered {
            self.students[s].status = Status::Active;
            self.student_body("registered", &event_id, s, at)
        } else if r < 0.45 || (r < 0.70 && !has_payments) {
            let p = self.next_payment;
            self.next_payment += 1;
            self.students[s].payments.push(p);
            self.payment_body("added", &event_id, s, p, at)
        } else if r < 0.62 {
            let p = *self.rng.pick(&self.students[s].payments);
            self.payment_body("updated", &event_id, s, p, at)
        } else if r < 0.70 {
            let list = &mut self.students[s].payments;
            let i = self.rng.below(list.len() as u64) as usize;
            let p = list.swap_remove(i);
            self.payment_body("cancelled", &event_id, s, p, at)
        } else if r < 0.82 {
            let kind = if state.status == Status::Active {
                self.students[s].status = Status::Dropped;
                "dropped"
            } else {
                self.students[s].status = Status::Active;
                "activated"
            };
            self.student_body(kind, &event_id, s, at)
        } else if r < 0.90 {
            self.students[s].status = Status::Active;
            self.student_body("activated", &event_id, s, at)
        } else {
            // The profile sent again (a new academic year, a changed contact).
            self.student_body("registered", &event_id, s, at)
        };
        Delivery {
            source: Source::Jodo,
            body: body.into_bytes(),
            key: event_id,
        }
    }

    fn student_body(&mut self, kind: &str, event_id: &str, s: usize, at: i64) -> String {
        let id = Generator::student_id(s);
        let mut p = Rng::new(s as u64 ^ 0x5eed);
        let first = p.pick(FIRST);
        let last = p.pick(LAST);
        let (gcode, gname) = p.pick(GRADES);
        let collector = if p.below(3) == 0 {
            "null".to_string()
        } else {
            format!("\"COL{}\"", p.below(40))
        };
        let phone = 9_000_000_000u64 + p.below(999_999_999);
        let mut body = String::with_capacity(1600);
        let _ = write!(
            body,
            r#"{{"event":"masterdata.student.{kind}","event_id":"{event_id}","version":"1.0","timestamp":{at},"payload":{{"jodo_student_id":"{id}","student":{{"identifier":"{ident}","custom_identifier":"ADM-{year}-{s:06}","collector_code":{collector},"grade":{{"code":"{gcode}","name":"{gname}"}},"academic_year_start":{year},"academic_year_end":{year1},"primary_contact_number":"{phone}","primary_contact_email":"{lf}.{ll}.parent{s}@example.com","notes":["#,
            ident = 100_000 + s,
            year = 2024,
            year1 = 2025,
            lf = first.to_ascii_lowercase(),
            ll = last.to_ascii_lowercase(),
        );
        let notes = 1 + self.rng.below(NOTE_KEYS.len() as u64) as usize;
        for (i, key) in NOTE_KEYS.iter().take(notes).enumerate() {
            if i > 0 {
                body.push(',');
            }
            let value = match *key {
                "registration_number" => format!("REG{:08}", s * 7 + 13),
                "father_name" => format!("{} {last}", p.pick(FIRST)),
                "mother_name" => format!("{} {last}", p.pick(FIRST)),
                "residential_address" => format!(
                    "{} Main Road, Block {}, Sector {}, Bengaluru 5600{:02}",
                    p.below(900) + 10,
                    p.below(20),
                    p.below(80),
                    p.below(99)
                ),
                "blood_group" => p.pick(&["A+", "B+", "O+", "AB+", "O-"]).to_string(),
                "transport_route" => format!("Route {} - Stop {}", p.below(30), p.below(15)),
                "house" => p.pick(&["Red", "Blue", "Green", "Yellow"]).to_string(),
                "previous_school" => format!("{} Public School", p.pick(LAST)),
                "admission_date" => format!("2023-0{}-1{}", 1 + p.below(9), p.below(10)),
                "sibling_admission_number" => format!("ADM-2021-{:06}", p.below(999_999)),
                "medical_conditions" => "None declared by the parent at admission".to_string(),
                "scholarship" => {
                    format!("Merit scholarship, {}% of tuition", 5 * (1 + p.below(10)))
                }
                "pickup_authorised" => format!(
                    "{} {last} (grandparent), {} {last} (uncle), school van {}",
                    p.pick(FIRST),
                    p.pick(FIRST),
                    p.below(30)
                ),
                _ => format!("+91 {}", 9_000_000_000u64 + p.below(999_999_999)),
            };
            let _ = write!(body, r#"{{"key":"{key}","value":"{value}"}}"#);
        }
        body.push_str("]}}}");
        body
    }

    fn payment_body(&mut self, kind: &str, event_id: &str, s: usize, p: u32, at: i64) -> String {
        let id = Generator::student_id(s);
        let parts = 1 + self.rng.below(6) as usize;
        let mut details = String::new();
        let mut total = 0u64;
        for i in 0..parts {
            let paise = (500 + self.rng.below(20_000)) * 100 + self.rng.below(2) * 50;
            total += paise;
            if i > 0 {
                details.push(',');
            }
            let _ = write!(
                details,
                r#"{{"fee_component":"{}","amount":"{}.{:02}","fee_schedule":"2024-25 term {}","due_date":"2024-0{}-10"}}"#,
                FEE_COMPONENTS[(i + p as usize) % FEE_COMPONENTS.len()],
                paise / 100,
                paise % 100,
                1 + p % 3,
                1 + p % 9
            );
        }
        // Jodo sends the amount as a number or a decimal string.
        let amount = if p.is_multiple_of(2) {
            format!("{}.{:02}", total / 100, total % 100)
        } else {
            format!("\"{}.{:02}\"", total / 100, total % 100)
        };
        let paid_at = at - self.rng.below(3600) as i64;
        let paid_at = chrono::DateTime::from_timestamp(paid_at, 0)
            .expect("a valid time")
            .format("%Y-%m-%dT%H:%M:%SZ");
        let mode = MODES[p as usize % MODES.len()];
        let mut pr = Rng::new(s as u64 ^ 0x5eed);
        let phone = 9_000_000_000u64 + pr.below(999_999_999);
        format!(
            r#"{{"event":"direct.payment.{kind}","event_id":"{event_id}","version":"1.0","timestamp":{at},"payload":{{"jodo_student_id":"{id}","payment":{{"id":"pay_{p:010}","amount":{amount},"mode":"{mode}","transaction_id":"TXN{tx:014}","settlement_utr":"UTR{utr:012}","notes":"Fee payment received at the school office for term {term}; receipt issued to the parent, counterfoil filed with the accounts team","paid_at":"{paid_at}","details":[{details}]}},"student":{{"identifier":"{ident}","custom_identifier":"ADM-2024-{s:06}","collector_code":"COL{col}","academic_year_start":2024,"academic_year_end":2025,"primary_contact_number":"{phone}"}}}}}}"#,
            tx = self.rng.below(100_000_000_000_000),
            utr = self.rng.below(1_000_000_000_000),
            term = 1 + p % 3,
            ident = 100_000 + s,
            col = s % 40,
        )
    }

    fn toolzz(&mut self, at: i64) -> Delivery {
        let mut at = at;
        loop {
            let body = self.toolzz_body(at);
            let key = toolzz::dedupe_key(body.as_bytes());
            let prefix =
                u128::from_str_radix(&key["blake3:".len().."blake3:".len() + 32], 16).expect("hex");
            if self.toolzz_seen.insert(prefix) {
                return Delivery {
                    source: Source::Toolzz,
                    body: body.into_bytes(),
                    key,
                };
            }
            // The same body already went out: move it a second on.
            at += 1;
        }
    }

    fn toolzz_body(&mut self, at: i64) -> String {
        let send_at = local(at);
        let r = self.rng.unit();
        let user = 700_000 + self.rng.below(self.cfg.learners as u64);
        let (mut p, name, email, cpf) = learner(user);
        if r < 0.35 {
            let (slug, label, acao) = if r < 0.10 {
                ("members.created", "Membros - Novo cadastro", "cadastro")
            } else {
                (
                    "members.updated",
                    "Membros - Edição de dados de usuário",
                    "atualização",
                )
            };
            let mut schools = String::new();
            for i in 0..1 + self.rng.below(4) {
                if i > 0 {
                    schools.push(',');
                }
                let _ = write!(
                    schools,
                    r#"{{"id":{},"role_id":4,"created_at":"{}","updated_at":"{}"}}"#,
                    123_456_000 + p.below(50),
                    school_date(EPOCH - 86_400 * (30 + p.below(600) as i64)),
                    school_date(at - self.rng.below(86_400) as i64)
                );
            }
            format!(
                r#"{{"event":{{"name":"{label}","slug":"{slug}","send_at":"{send_at}","acao":"{acao}"}},"data":{{"user":{{"id":{user},"name":"{name}","email":"{email}","institution":[{{"id":12345,"schools":[{schools}]}}],"cpf":"{cpf}","nickname":null,"uuid":"{uuid}","phone":"+55 11 9{ph:08}","date_of_birth":"{dob}","address":{{"street":"Rua {street}, {num}","district":"Vila {district}","city":"São Paulo","state":"SP","zip":"0{zip:04}-{zip2:03}"}}}}}}}}"#,
                street = p.pick(LAST),
                num = p.below(3000),
                district = p.pick(FIRST),
                zip = p.below(10_000),
                zip2 = p.below(1000),
                uuid = self.uuid(),
                ph = p.below(100_000_000),
                dob = format_args!(
                    "20{:02}-{:02}-{:02}",
                    8 + p.below(10),
                    1 + p.below(12),
                    1 + p.below(28)
                ),
            )
        } else if r < 0.65 || (r < 0.85 && self.enrollments.is_empty()) {
            let course = 123_000 + self.rng.below(COURSES);
            let enrollment = self.next_enrollment;
            self.next_enrollment += 1;
            self.enrollments.push((enrollment, user, course));
            enrollment_body(
                "activities.course.enrollment",
                "Atividades - Nova matrícula",
                &send_at,
                enrollment,
                (user, &name, &email, &cpf),
                course,
                if self.rng.below(4) == 0 {
                    format!("\"{}\"", local_date(at + 365 * 86_400))
                } else {
                    "null".into()
                },
            )
        } else if r < 0.85 {
            let (enrollment, u, course) = *self.rng.pick(&self.enrollments);
            let (_, name, email, cpf) = learner(u);
            enrollment_body(
                "activities.course.completed",
                "Atividades - Curso concluído",
                &send_at,
                enrollment,
                (u, &name, &email, &cpf),
                course,
                "null".into(),
            )
        } else if r < 0.95 {
            let course = 123_000 + self.rng.below(COURSES);
            format!(
                r#"{{"event":{{"name":"Atividades - Certificado emitido","slug":"activities.certificate.issued","send_at":"{send_at}"}},"data":{{"institution":{{"id":12345}},"user":{{"id":{user},"name":"{name}","email":"{email}","cpf":"{cpf}"}},"course":{{"id":{course},"name":"{cname}","workload":"{wl}h"}},"certificate":{{"certified_at":"{send_at}","type":"conclusion","approval_rate":{rate}.{rate_d},"code":"CERT-{code:012X}","url":"https://certificados.example.com.br/validar/{code:012X}","template":"Certificado de conclusão - modelo {tpl}","signed_by":"Coordenação Pedagógica"}}}}}}"#,
                tpl = 1 + self.rng.below(5),
                cname = course_name(course),
                wl = 10 + course % 50,
                rate = 60 + self.rng.below(40),
                rate_d = self.rng.below(10),
                code = self.rng.below(1 << 48),
            )
        } else {
            // A slug registrar does not project: kept in the log, passed over.
            let mut courses = String::new();
            for i in 0..2 + self.rng.below(5) {
                if i > 0 {
                    courses.push(',');
                }
                let c = 123_000 + self.rng.below(COURSES);
                let _ = write!(courses, r#"{{"id":{c},"title":"{}"}}"#, course_name(c));
            }
            format!(
                r#"{{"event":{{"name":"Atividades - Trilha concluída","slug":"activities.trail.completed","send_at":"{send_at}"}},"data":{{"institution":{{"id":12345}},"user":{{"id":{user},"name":"{name}","email":"{email}"}},"trail":{{"id":{trail},"name":"Trilha {trail}","finished_at":"{send_at}","courses":[{courses}]}}}}}}"#,
                trail = 987_000 + self.rng.below(40),
            )
        }
    }
}

/// A learner's stable details, and the generator they came from.
fn learner(user: u64) -> (Rng, String, String, String) {
    let mut p = Rng::new(user ^ 0xfeed);
    let name = format!("{} {} {}", p.pick(FIRST), p.pick(LAST), p.pick(LAST));
    let email = format!(
        "{}.{}{}@alunos.example.com.br",
        name.split(' ').next().unwrap_or("x").to_ascii_lowercase(),
        p.pick(LAST).to_ascii_lowercase(),
        user % 1000
    );
    let cpf = format!(
        "{:03}.{:03}.{:03}-{:02}",
        p.below(1000),
        p.below(1000),
        p.below(1000),
        p.below(100)
    );
    (p, name, email, cpf)
}

fn enrollment_body(
    slug: &str,
    label: &str,
    send_at: &str,
    enrollment: u64,
    (user, name, email, cpf): (u64, &str, &str, &str),
    course: u64,
    date_expire: String,
) -> String {
    let status = u8::from(!enrollment.is_multiple_of(17));
    format!(
        r#"{{"event":{{"name":"{label}","slug":"{slug}","send_at":"{send_at}"}},"data":{{"institution":{{"id":12345}},"course":{{"id":{course},"name":"{cname}","slug":"curso-{course}","workload":"{wl}h","category":"Ensino Fundamental II","image":"https://cdn.example.com.br/cursos/{course}/capa.png"}},"enrollment":{{"id":{enrollment},"date_expire":{date_expire},"course_id":{course},"actived":{status},"status":{status},"origin":"matricula_manual"}},"user":{{"id":{user},"name":"{name}","email":"{email}","cpf":"{cpf}","nickname":null,"uuid":null,"phone":"+55 11 9{ph:08}"}}}}}}"#,
        cname = course_name(course),
        wl = 10 + course % 50,
        ph = user % 100_000_000,
    )
}

fn course_name(course: u64) -> String {
    const TOPICS: &[&str] = &[
        "Matemática Básica",
        "Língua Portuguesa e Redação",
        "Ciências da Natureza",
        "Introdução à Programação",
        "História do Brasil",
        "Inglês Intermediário",
    ];
    format!(
        "{} - Módulo {}",
        TOPICS[(course % TOPICS.len() as u64) as usize],
        course % 10
    )
}

/// `send_at`: the zone-less São Paulo wall time.
fn local(at: i64) -> String {
    chrono::DateTime::from_timestamp(at + SAO_PAULO_OFFSET, 0)
        .expect("a valid time")
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn local_date(at: i64) -> String {
    chrono::DateTime::from_timestamp(at + SAO_PAULO_OFFSET, 0)
        .expect("a valid time")
        .format("%Y-%m-%d")
        .to_string()
}

fn school_date(at: i64) -> String {
    chrono::DateTime::from_timestamp(at + SAO_PAULO_OFFSET, 0)
        .expect("a valid time")
        .format("%d/%m/%Y %H:%M:%S")
        .to_string()
}

/// `n` sends: `n - n/100` distinct deliveries in production order, and `n/100`
/// exact copies of earlier ones, each sent a little after its original (a
/// provider's retry). Returns the distinct deliveries and the send order
/// (indices into them).
pub fn with_duplicates(gen: &mut Generator, n: usize, seed: u64) -> (Vec<Delivery>, Vec<usize>) {
    let dups = n / 100;
    let distinct: Vec<Delivery> = (0..n - dups).map(|_| gen.next_delivery()).collect();
    let mut order: Vec<usize> = (0..distinct.len()).collect();
    let mut rng = Rng::new(seed);
    for _ in 0..dups {
        let original = rng.below(distinct.len() as u64) as usize;
        // Inserts so far only moved it later, by at most their number.
        let at = original
            + order[original..]
                .iter()
                .position(|&x| x == original)
                .expect("every original is in the order");
        let pos = (at + 1 + rng.below(2_000) as usize).min(order.len());
        order.insert(pos, original);
    }
    (distinct, order)
}
