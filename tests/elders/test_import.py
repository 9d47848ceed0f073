"""Import and export through HTTP, as a street office's spreadsheet arrives."""

import csv
import io
import zipfile
from datetime import date

import openpyxl
from sqlmodel import select

from callcenter import tables
from callcenter.audit.models import AuditLog
from callcenter.elders.models import Elder
from tests.conftest import csrf_headers, id_number

HEADER = ["姓名", "身份证号", "联系电话", "区", "街道", "社区", "详细地址", "居住状况", "失能等级", "紧急联系人", "紧急联系人关系", "紧急联系人电话", "备注"]
ID_A = id_number(date(1939, 4, 5), "female", 11)
ID_B = id_number(date(1946, 8, 9), "male", 12)
ID_C = id_number(date(1951, 12, 1), "female", 13)
BAD_CHECKSUM = ID_C[:17] + ("0" if ID_C[17] != "0" else "1")


def sheet_rows():
    return [
        HEADER,
        ["刘桂兰", ID_A, "13800001111", "中山区", "桃源街道", "春柳社区", "桃源街5号", "独居", "轻度失能", "刘伟", "儿子", "13900002222", ""],  # row 2 ok
        ["陈德明", ID_B, "0411-82345678；13800003333", "中山区", "桃源街道", "春柳社区", "桃源街7号", "空巢", "能力完好", "", "", "", ""],  # row 3 ok
        ["孙淑珍", BAD_CHECKSUM, "13800004444", "西岗区", "白云街道", "友好社区", "", "独居", "中度失能", "", "", "", ""],  # row 4 bad ID
        ["", ID_C, "13800005555", "西岗区", "白云街道", "友好社区", "", "", "", "", "", "", ""],  # row 5 no name
        ["周玉梅", ID_C, "1380000", "西岗区", "白云街道", "友好社区", "", "很穷", "完好", "", "", "", ""],  # row 6 bad phone, codes
        ["刘桂兰", ID_A, "13800001111", "中山区", "桃源街道", "春柳社区", "", "", "", "", "", "", ""],  # row 7 duplicate of row 2
        ["吴玉林", id_number(date(1944, 1, 1), "male", 14), "13800006666", "西岗区", "", "友好社区", "", "", "", "", "", "", ""],  # row 8 no street
        ["郑秀兰", id_number(date(1943, 2, 2), "female", 15), "13800007777", "", "", "", "", "", "", "赵六", "女儿", "12345", ""],  # row 9 contact phone bad
    ]


def csv_bytes(rows, encoding="utf-8-sig"):
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(encoding)


def upload(client, filename, content):
    return client.post("/api/elders/import", files={"file": (filename, content)}, headers=csrf_headers(client))


def elder_names(services):
    with services.db.session_scope() as session:
        return sorted(e.name for e in session.exec(select(Elder)))


def test_bad_rows_are_reported_and_the_rest_imported(supervisor_client, services):
    supervisor_client.get("/api/auth/me")
    response = upload(supervisor_client, "街道老人名单.csv", csv_bytes(sheet_rows()))
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["total"], report["created"], report["updated"], report["rejected_rows"]) == (8, 2, 0, 6)
    problems = {(p["row"], p["column"]) for p in report["problems"]}
    assert problems == {
        (4, "身份证号"),
        (5, "姓名"),
        (6, "联系电话"), (6, "居住状况"), (6, "失能等级"),
        (7, "身份证号"),
        (8, "社区"),
        (9, "紧急联系人电话"),
    }
    reasons = {(p["row"], p["column"]): p["reason"] for p in report["problems"]}
    assert reasons[(4, "身份证号")] == "身份证号校验位错误"
    assert reasons[(7, "身份证号")] == "与第 2 行身份证号重复"
    assert elder_names(services) == ["刘桂兰", "陈德明"]  # nothing of the bad rows, not even partly

    lookup = supervisor_client.get("/api/elders/lookup", params={"phone": "82345678"}).json()["matches"]
    assert [m["name"] for m in lookup] == ["陈德明"]
    relative = supervisor_client.get("/api/elders/lookup", params={"phone": "13900002222"}).json()["matches"]
    assert [(m["name"], m["relation_label"]) for m in relative] == [("刘桂兰", "儿子")]


def test_importing_twice_updates_instead_of_duplicating(supervisor_client, services):
    supervisor_client.get("/api/auth/me")
    good = sheet_rows()[:3]
    assert upload(supervisor_client, "a.csv", csv_bytes(good)).json()["created"] == 2
    good[1][6] = "桃源街9号"  # the address changed in the street office's new list
    second = upload(supervisor_client, "a.csv", csv_bytes(good)).json()
    assert (second["created"], second["updated"], second["rejected_rows"]) == (0, 2, 0)
    assert elder_names(services) == ["刘桂兰", "陈德明"]
    found = supervisor_client.get("/api/elders", params={"q": "刘桂兰"}).json()["items"]  # cards (issue 17): the address is read in full
    profile = supervisor_client.get(f"/api/elders/{found[0]['id']}", params={"reason": "correction"}).json()
    assert [profile["address"]] == ["桃源街9号"]
    with services.db.session_scope() as session:
        actions = sorted(a.action for a in session.exec(select(AuditLog).where(AuditLog.action.like("import%"))))
    assert actions == ["import_create", "import_create", "import_update", "import_update"]


def test_xlsx_and_gbk_csv_are_read(supervisor_client, services):
    supervisor_client.get("/api/auth/me")
    workbook = openpyxl.Workbook()
    for row in sheet_rows()[:2]:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert upload(supervisor_client, "名单.xlsx", buffer.getvalue()).json()["created"] == 1
    gbk = csv_bytes([sheet_rows()[0], sheet_rows()[2]], encoding="gb18030")
    assert upload(supervisor_client, "名单.csv", gbk).json()["created"] == 1
    assert elder_names(services) == ["刘桂兰", "陈德明"]


def test_id_number_saved_as_a_number_by_excel_is_explained(supervisor_client):
    supervisor_client.get("/api/auth/me")
    workbook = openpyxl.Workbook()
    workbook.active.append(["姓名", "身份证号"])
    workbook.active.append(["刘桂兰", float(ID_A[:17] + "0")])
    buffer = io.BytesIO()
    workbook.save(buffer)
    report = upload(supervisor_client, "x.xlsx", buffer.getvalue()).json()
    assert report["rejected_rows"] == 1
    assert "Excel" in report["problems"][0]["reason"]


def test_file_without_required_columns_or_of_another_type_is_refused(supervisor_client):
    supervisor_client.get("/api/auth/me")
    missing = upload(supervisor_client, "a.csv", csv_bytes([["姓名", "电话"], ["张三", "13800001111"]]))
    assert missing.status_code == 422 and "身份证号" in missing.json()["detail"][0]["msg"]
    other = upload(supervisor_client, "a.txt", b"hello")
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["body", "file"]


def test_agents_cannot_import_or_export(agent_client):
    agent_client.get("/api/auth/me")
    assert upload(agent_client, "a.csv", csv_bytes(sheet_rows()[:2])).status_code == 403
    assert agent_client.get("/api/elders/export").status_code == 403


def test_export_round_trips_with_chinese_headers(supervisor_client, services):
    supervisor_client.get("/api/auth/me")
    upload(supervisor_client, "a.csv", csv_bytes(sheet_rows()[:3]))
    exported = supervisor_client.get("/api/elders/export", params={"format": "csv", "reason": "correction"})
    assert exported.status_code == 200
    assert exported.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["姓名", "身份证号", "性别"]
    by_name = {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert by_name["刘桂兰"]["身份证号"].count("*") == 10  # supervisors get masked numbers
    assert by_name["刘桂兰"]["居住状况"] == "独居" and by_name["刘桂兰"]["紧急联系人关系"] == "儿子"
    assert by_name["陈德明"]["联系电话"] == "0411-82345678；138 0000 3333"

    xlsx = supervisor_client.get("/api/elders/export", params={"format": "xlsx", "q": "chen", "reason": "correction"})
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][0] == "姓名" and [row[0] for row in values[1:]] == ["陈德明"]


def test_admin_export_reimports_without_change(admin_client, services):
    admin_client.get("/api/auth/me")
    upload(admin_client, "a.csv", csv_bytes(sheet_rows()[:3]))
    exported = admin_client.get("/api/elders/export", params={"reason": "correction"}).content
    assert ID_A.encode() in exported
    report = upload(admin_client, "export.csv", exported).json()
    assert report["problems"] == []
    assert (report["created"], report["updated"], report["rejected_rows"]) == (0, 2, 0)
    assert elder_names(services) == ["刘桂兰", "陈德明"]


HOSTILE = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(1)", "\t=1+1", "\r=1+1"]


def test_exports_carry_formula_like_text_as_text(admin_client, services):
    """Finding 2: names and notes such as =cmd|' /C calc'!A0 were exported as live formulas
    (XLSX) and raw (CSV). The CSV quotes them (OWASP), the XLSX holds them as text cells, and
    the import reads its own export back unchanged."""
    admin_client.get("/api/auth/me")
    upload(admin_client, "a.csv", csv_bytes(sheet_rows()[:2]))
    with services.db.session_scope() as session:
        elder = session.exec(select(Elder)).one()
        elder_id = elder.id
    for value in HOSTILE:
        assert admin_client.patch(f"/api/elders/{elder_id}", json={"name": value[:50], "notes": value}).status_code == 200
        exported = admin_client.get("/api/elders/export", params={"format": "csv", "reason": "correction"}).content.decode("utf-8-sig")
        row = dict(zip(*list(csv.reader(io.StringIO(exported)))))
        assert row["姓名"] == "'" + value.strip() and row["备注"] == "'" + value.strip()
        xlsx = admin_client.get("/api/elders/export", params={"format": "xlsx", "reason": "correction"}).content
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx)).active
        header = [cell.value for cell in sheet[1]]
        cell = sheet.cell(row=2, column=header.index("备注") + 1)
        assert cell.data_type == "s" and cell.value == value.strip() and cell.quotePrefix
        report = upload(admin_client, "export.csv", exported.encode("utf-8-sig")).json()
        assert report["problems"] == [] and report["updated"] == 1
        with services.db.session_scope() as session:
            assert session.get(Elder, elder_id).notes == value.strip()


def test_negative_numbers_are_not_quoted():
    assert tables.escape_cell("-20.00") == "-20.00" and tables.escape_cell("-2+3") == "'-2+3"


def test_import_opens_a_new_balance_but_never_moves_one(supervisor_client, services):
    supervisor_client.get("/api/auth/me")
    rows = [["姓名", "身份证号", "补贴余额"], ["刘桂兰", ID_A, "300"]]
    assert upload(supervisor_client, "a.csv", csv_bytes(rows)).json()["created"] == 1
    same = upload(supervisor_client, "a.csv", csv_bytes(rows)).json()
    assert (same["updated"], same["problems"]) == (1, [])
    report = upload(supervisor_client, "a.csv", csv_bytes([rows[0], ["刘桂兰", ID_A, "99999"]])).json()
    assert report["rejected_rows"] == 1 and report["problems"][0]["column"] == "补贴余额"
    with services.db.session_scope() as session:
        elder = session.exec(select(Elder)).one()
        assert str(elder.subsidy_balance) == "300.00"
        entry = session.exec(select(AuditLog).where(AuditLog.action == "import_create")).one()
    assert entry.detail["changes"] == {"subsidy_balance": {"old": None, "new": "300.00"}}


# --- finding 5: streaming, capped, bomb-proof import; finding 6: hostile CSV cells -----------------

def xlsx_bomb(rows: int = 1_000_000) -> bytes:
    """A real XLSX whose sheet XML repeats one row a million times: ~50 MB of XML in ~100 KB."""
    buffer = io.BytesIO()
    workbook = openpyxl.Workbook()
    workbook.active.append(["姓名", "身份证号"])
    workbook.save(buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for item in source.infolist():
            if item.filename != "xl/worksheets/sheet1.xml":
                bomb.writestr(item, source.read(item))
                continue
            with bomb.open(item.filename, "w") as sheet:
                sheet.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
                row = '<row><c t="inlineStr"><is><t>张三</t></is></c><c t="inlineStr"><is><t>1</t></is></c></row>'.encode()
                for _ in range(rows // 1000):
                    sheet.write(row * 1000)
                sheet.write(b"</sheetData></worksheet>")
    return out.getvalue()


def test_an_xlsx_zip_bomb_is_refused_before_it_is_unpacked(supervisor_client, services):
    """Finding 5: a 2 MB XLSX of a million rows kept the web process busy for minutes."""
    supervisor_client.get("/api/auth/me")
    bomb = xlsx_bomb()
    assert len(bomb) < 1024 * 1024
    response = upload(supervisor_client, "bomb.xlsx", bomb)
    assert response.status_code == 422 and "压缩炸弹" in response.json()["detail"][0]["msg"]
    assert elder_names(services) == []


def test_the_row_cap_stops_reading_at_the_first_row_over_it(supervisor_client, services, monkeypatch):
    from callcenter.elders import transfer

    monkeypatch.setattr(transfer, "MAX_ROWS", 3)
    read = []
    real_rows_to_dicts = transfer._rows_to_dicts

    def counting(rows):
        def tracked():
            for row in rows:
                read.append(row)
                yield row
        return real_rows_to_dicts(tracked())

    monkeypatch.setattr(transfer, "_rows_to_dicts", counting)
    supervisor_client.get("/api/auth/me")
    rows = [["姓名", "身份证号"]] + [[f"老人{i}", id_number(sequence=i)] for i in range(10)]
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    for name, content in (("a.csv", csv_bytes(rows)), ("a.xlsx", buffer.getvalue())):
        read.clear()
        response = upload(supervisor_client, name, content)
        assert response.status_code == 422 and "最多 3 行" in response.json()["detail"][0]["msg"]
        assert len(read) == 5  # the header, 3 rows, the one over the cap: never the rest
    assert elder_names(services) == []


def test_an_import_larger_than_its_limit_is_refused(supervisor_client, settings):
    supervisor_client.get("/api/auth/me")
    response = upload(supervisor_client, "big.csv", b"x" * (settings.import_max_bytes + 100 * 1024))
    assert response.status_code == 413 and "请求内容过大" in response.json()["detail"]


def test_hostile_csv_cells_are_reported_not_a_server_error(supervisor_client, services):
    """Finding 6: a CSV with a NUL byte or a 128 KB field was a 500; so was a name too long."""
    supervisor_client.get("/api/auth/me")
    nul = csv_bytes([["姓名", "身份证号"], ["刘\x00桂兰", ID_A]])
    response = upload(supervisor_client, "nul.csv", nul)
    assert response.status_code == 422 and "空字符" in response.json()["detail"][0]["msg"]
    huge = csv_bytes([["姓名", "身份证号", "备注"], ["刘桂兰", ID_A, "长" * 128 * 1024]])
    response = upload(supervisor_client, "huge.csv", huge)
    assert response.status_code == 422 and "第 2 行" in response.json()["detail"][0]["msg"]
    long_name = upload(supervisor_client, "a.csv", csv_bytes([["姓名", "身份证号", "紧急联系人", "紧急联系人电话"],
                                                           ["名" * 51, ID_A, "", ""], ["刘桂兰", ID_B, "子" * 60, "13900002222"]]))
    assert long_name.status_code == 200, long_name.text
    problems = {(p["row"], p["column"]): p["reason"] for p in long_name.json()["problems"]}
    assert problems == {(2, "姓名"): "不能超过 50 字", (3, "紧急联系人"): "不能超过 50 字"}
    assert elder_names(services) == []


def test_an_export_needs_a_stated_reason_and_shows_in_each_exported_elders_audit(supervisor_client, services):
    """Full profiles in bulk are purpose-bound views like a profile page's: a reason, and an audit
    entry per elder (so each elder's own data export lists it)."""
    from sqlmodel import select

    from callcenter.audit.models import AuditLog

    supervisor_client.get("/api/auth/me")
    upload(supervisor_client, "a.csv", csv_bytes(sheet_rows()[:3]))
    refused = supervisor_client.get("/api/elders/export")
    assert refused.status_code == 422 and "导出理由" in refused.text
    assert supervisor_client.get("/api/elders/export", params={"reason": "curiosity"}).status_code == 422
    assert supervisor_client.get("/api/elders/export", params={"reason": "quality_check"}).status_code == 200
    with services.db.session_scope() as session:
        views = session.exec(select(AuditLog).where(AuditLog.action == "view")).all()
        assert sorted(row.detail["reason"] for row in views) == ["quality_check", "quality_check"]
        assert len({row.elder_id for row in views}) == 2 and all(row.detail["via"] == "export" for row in views)
